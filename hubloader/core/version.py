"""Who we are on the wire: the version, and the one User-Agent every request of ours carries."""

__version__ = "0.1.0"

#: Sent with every request to a hub, a CDN or a shared cache, so their operators can tell us apart.
USER_AGENT = f"hubloader/{__version__}"
