"""What is on disk: the SQLite index, file recognisers, trigger words, sidecars, folder scans and archives."""
