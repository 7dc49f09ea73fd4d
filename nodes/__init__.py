"""ComfyUI glue: loader nodes, and (inside a running ComfyUI) the /hubloader/ routes and websocket events.

Cheap to import: no network, no torch, no folder scan; aiohttp is only touched when ComfyUI's server
(which already imported it) is running.
"""

from __future__ import annotations

import logging
import sys

from .loaders import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

log = logging.getLogger(__name__)


def _register_routes() -> None:
    """Add our routes to ComfyUI's server at import time (ComfyUI adds its route table right after)."""
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    if prompt_server is None:
        return
    from hubloader.faces.advice import COMFYUI
    from hubloader.faces.jobs import JobManager

    from .routes import HubRoutes

    HubRoutes(JobManager(face=COMFYUI), prompt_server.send_sync).add_to(prompt_server.routes)
    from . import verify

    verify.register(prompt_server)  # "verify models before a prompt runs" (off unless the setting is on)


try:
    _register_routes()
except Exception:  # the nodes must still load if the page side cannot
    log.exception("hubloader: could not register the /hubloader routes; the Model Hub sidebar will not work")

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
