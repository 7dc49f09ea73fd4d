"""Hubloader's hub layer: search, download, verify and index diffusion models from HuggingFace and CivitAI.

Importing this package is cheap on purpose (ComfyUI and A1111 import it at start-up): the plain
data types load now, the services on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AuthRequired,
    Cancelled,
    DiskFull,
    GatedModel,
    HubloaderError,
    IntegrityError,
    InvalidFile,
    NetworkError,
    NotFound,
    RateLimited,
    UnsafeFile,
)
from .types import (
    BaseModel,
    CacheCleanupReport,
    DownloadResult,
    ModelFile,
    ModelFilter,
    ModelFormat,
    ModelMetadata,
    ModelType,
    SortBy,
    Source,
)

__version__ = "0.1.0"

# name → module that defines it; loaded on first attribute access (PEP 562).
_LAZY = {
    "HuggingFaceHubService": "huggingface",
    "CivitAIService": "civitai",
    "ModelRegistry": "registry",
    "RateLimiter": "ratelimit",
}

if TYPE_CHECKING:  # pragma: no cover
    from .civitai import CivitAIService
    from .huggingface import HuggingFaceHubService
    from .ratelimit import RateLimiter
    from .registry import ModelRegistry


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubloader' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthRequired",
    "BaseModel",
    "CacheCleanupReport",
    "Cancelled",
    "CivitAIService",
    "DiskFull",
    "DownloadResult",
    "GatedModel",
    "HubloaderError",
    "HuggingFaceHubService",
    "IntegrityError",
    "InvalidFile",
    "ModelFile",
    "ModelFilter",
    "ModelFormat",
    "ModelMetadata",
    "ModelRegistry",
    "ModelType",
    "NetworkError",
    "NotFound",
    "RateLimited",
    "RateLimiter",
    "SortBy",
    "Source",
    "UnsafeFile",
    "__version__",
]
