"""The gate every downloaded byte passes: :func:`~hubloader.gate.fetch.fetch_file` takes a
:class:`~hubloader.gate.request.FileRequest` (what the source describes) and decides, in this order, the
host, the destination, trust (hash, pickle policy), then the shared cache and the engine."""
