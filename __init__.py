"""ComfyUI entry point. Cheap on purpose: no network, no torch, no gradio, no folder scan at import.

The repository root is a package only because ComfyUI loads a custom node from its ``__init__.py``. The hub
layer is the ``hubloader/`` package inside it, imported as top-level ``hubloader`` by every face. A clone is
usually *named* ``hubloader`` too, so the root itself can end up imported under that name: by a ComfyUI that
registers a custom node under its folder's name, by a test runner, or by anything that puts the folder above
the clone on ``sys.path``. Then this module is ``hubloader`` for the whole process, and it serves the hub
layer rather than shadowing it (the ``__name__ == "hubloader"`` branch below).
"""

from __future__ import annotations

import os
import sys
from typing import Any

_ROOT = os.path.dirname(os.path.abspath(__file__))
_HUB_LAYER = os.path.join(_ROOT, "hubloader")
_NODE_EXPORTS = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")

WEB_DIRECTORY = "./web"

if __name__ == "hubloader":
    # Submodules are found in the hub layer first, then beside it: ``hubloader.registry`` is the layer's,
    # ``hubloader.nodes`` (the ComfyUI glue, asked for below) is the root's. The layer has no module of
    # the glue's names, and tests/test_layers.py keeps it so.
    __path__ = [_HUB_LAYER, _ROOT]
    from .api import *  # noqa: F403
    from .api import LAZY_NAMES, __version__  # noqa: F401
    from .api import __all__ as _EAGER
    from .api import __getattr__ as _hub_getattr

    __all__ = [*_EAGER, *LAZY_NAMES]

    def __getattr__(name: str) -> Any:
        """The hub layer's lazy names, and the node mappings ComfyUI reads right after importing us."""
        if name in _NODE_EXPORTS:
            from . import nodes

            return getattr(nodes, name)
        return _hub_getattr(name)

elif not __package__:
    # Imported as a lone module, not as a package, so no relative import can work. pytest does this to the
    # rootdir's __init__.py when the folder's name is no Python name (a `hubloader-main` zip, a `wt-x`
    # worktree): it falls back to the module name ``__init__``. Nothing there needs the nodes.
    __all__ = ["WEB_DIRECTORY"]

else:
    # ComfyUI imports this folder under a path-derived name and does not put custom_nodes on sys.path, so
    # make the hub layer findable as top-level ``hubloader``. Appended, not prepended: ComfyUI's own
    # ``nodes`` module must keep winning over our nodes/ folder.
    if _ROOT not in sys.path:
        sys.path.append(_ROOT)

    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
