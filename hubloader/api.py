"""The names ``hubloader`` exports: the plain data types and errors now, the services on first use.

Kept apart from ``__init__`` so that the repository root can serve the same names when a clone's folder is
itself called ``hubloader`` and is imported under that name (see the root ``__init__.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

from hubloader.core.errors import (
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
from hubloader.core.metadata import (
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
from hubloader.core.version import __version__

# name → module that defines it; loaded on first attribute access (PEP 562).
_LAZY = {
    "HuggingFaceHubService": "sources.huggingface",
    "CivitAIService": "sources.civitai",
    "ModelRegistry": "registry",
    "RateLimiter": "engine.ratelimit",
    "plan": "workflows.plan",
    "InstallPlan": "workflows.plan",
    "verify": "workflows.verify",
}


#: A public name that is another name in its module.
_ATTRIBUTE = {"plan": "plan_install", "verify": "verify_file"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubloader' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __package__), _ATTRIBUTE.get(name, name))
    globals()[name] = value
    return value


# What ``from hubloader.api import *`` copies: the names loaded now. The lazy ones are in LAZY_NAMES.
__all__ = [
    "AuthRequired",
    "BaseModel",
    "CacheCleanupReport",
    "Cancelled",
    "DiskFull",
    "DownloadResult",
    "GatedModel",
    "HubloaderError",
    "IntegrityError",
    "InvalidFile",
    "ModelFile",
    "ModelFilter",
    "ModelFormat",
    "ModelMetadata",
    "ModelType",
    "NetworkError",
    "NotFound",
    "RateLimited",
    "SortBy",
    "Source",
    "UnsafeFile",
    "__version__",
]

LAZY_NAMES = tuple(_LAZY)
