"""ComfyUI entry point. Cheap on purpose: no network, no torch, no gradio, no folder scan at import."""

import os
import sys

# ComfyUI imports this folder under a path-derived name and does not put custom_nodes on sys.path; the hub
# layer is imported as top-level ``hubloader`` (as A1111 and the CLI do), so make the repo root findable.
# Appended, not prepended: ComfyUI's own ``nodes`` module must keep winning over our nodes/ folder.
_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
