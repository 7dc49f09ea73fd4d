"""The transfer engine: resumable, verified HTTP downloads, rate limits, content sniffing and file hashing."""
