"""The transfer engine: resumable, verified HTTP downloads, rate limits, content sniffing and file hashing."""

#: Byte sizes in the engine are written in MiB.
MiB = 1024 * 1024
