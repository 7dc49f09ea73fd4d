"""Hubloader's hub layer: search, download, verify and index diffusion models from HuggingFace and CivitAI.

Importing this package is cheap on purpose (ComfyUI and A1111 import it at start-up): the plain
data types load now, the services on first use (PEP 562).
"""

from typing import TYPE_CHECKING

from hubloader.api import *  # noqa: F403
from hubloader.api import LAZY_NAMES, __getattr__, __version__  # noqa: F401
from hubloader.api import __all__ as _EAGER

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.engine.ratelimit import RateLimiter  # noqa: F401
    from hubloader.registry import ModelRegistry  # noqa: F401
    from hubloader.sources.civitai import CivitAIService  # noqa: F401
    from hubloader.sources.huggingface import HuggingFaceHubService  # noqa: F401

__all__ = [*_EAGER, *LAZY_NAMES]
