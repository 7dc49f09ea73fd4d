"""Many machines, one download: a site-wide shared cache keyed by SHA256, in front of the origin.

Ten workers that need the same 6 GB checkpoint should fetch it from CivitAI/HuggingFace once, not ten
times. When ``HUBLOADER_SHARED_CACHE`` (or ``--shared-cache``) names a shared folder or an
``s3://bucket/prefix``, every download whose SHA256 is known goes through :func:`fetch_via_shared_cache`:

1. **Pull before origin.** The object ``sha256/ab/cdef…`` is copied into the models folder with
   parallel ranged reads, hashed in order while copying; bytes that do not match their name are
   quarantined, reported and fetched again.
2. **Fetch once per site.** Workers missing the same object elect one fetcher through a lease beside
   the object (a file guarded by a ``filelock`` on a share; a conditional write on S3). The fetcher
   renews the lease while it downloads; the others wait, then copy from the cache. A lease nobody
   renews for its TTL (a killed fetcher) is taken over with a compare-and-swap, and the new fetcher
   resumes where the dead one stopped: on a shared folder from its ``.part`` (downloaded into the
   share), on S3 from the chunks of its ``.part`` that it staged in the bucket while downloading.
3. **Publish after verification.** The download engine verifies the SHA256 before the object becomes
   visible under its hash key (a rename on a share; a completed multipart upload on S3).

Expiry is judged by each waiter's own monotonic clock (the lease token did not change for a whole
TTL), so machines with skewed clocks agree. If the cache is unreachable, downloads go to the origin
with a warning, or fail when ``HUBLOADER_SHARED_CACHE_FALLBACK=fail``.

This module decides which cache is in effect and holds the faces' push; one fetch through it lives in
:mod:`hubloader.sharedcache.fetching`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hubloader.core.errors import ConfigError, HubloaderError, NotFound
from hubloader.core.metadata import DownloadResult
from hubloader.core.settings import load_settings, redact_url
from hubloader.sharedcache.fetching import DEFAULT_LEASE_S, OriginFetch, SharedCache
from hubloader.sharedcache.stores import DirectoryStore, SharedCacheUnavailable, open_store

ENV_URL = "HUBLOADER_SHARED_CACHE"
ENV_FALLBACK = "HUBLOADER_SHARED_CACHE_FALLBACK"  # "origin" (default) or "fail"
ENV_LEASE = "HUBLOADER_SHARED_CACHE_LEASE_S"


def open_shared_cache(
    url: str, *, fallback: str | None = None, lease_s: float | None = None, origin: bool = True
) -> SharedCache:
    """A :class:`SharedCache` for a folder path or ``s3://bucket/prefix``; options default to the env."""
    fallback = (fallback or os.environ.get(ENV_FALLBACK) or "origin").strip().lower()
    if fallback not in ("origin", "fail"):
        raise ConfigError(f"{ENV_FALLBACK}={fallback!r} is not 'origin' or 'fail'.")
    try:
        lease = float(lease_s or os.environ.get(ENV_LEASE) or DEFAULT_LEASE_S)
    except ValueError:
        raise ConfigError(f"{ENV_LEASE} must be a number of seconds.") from None
    return SharedCache(open_store(url), fallback=fallback, lease_s=max(1.0, lease), origin=origin)


def shared_cache_url(given: str | None = None) -> str:
    """The shared cache in effect, the one rule every face follows: ``given`` (a command's ``--shared-cache``),
    else ``HUBLOADER_SHARED_CACHE``, else the ``shared_cache`` setting; "" when none is named."""
    return str(given or os.environ.get(ENV_URL) or load_settings().get("shared_cache") or "").strip()


def configured_shared_cache() -> SharedCache | None:
    """The cache named by ``HUBLOADER_SHARED_CACHE`` (or the ``shared_cache`` setting), else None."""
    url = shared_cache_url()
    return open_shared_cache(url) if url else None


def resolve_shared_cache(cache: SharedCache | str | None) -> SharedCache | None:
    """The cache a download goes through: the one given (or opened from its URL), else the configured one."""
    return open_shared_cache(cache) if isinstance(cache, str) else cache or configured_shared_cache()


def fetch_via_shared_cache(
    expected_sha256: str,
    dest: Path | str,
    origin_fetch: OriginFetch,
    *,
    cache: SharedCache | str | None = None,
    **options: Any,
) -> DownloadResult:
    """The gate's shared-cache step (:func:`hubloader.gate.fetch.fetch_file` calls it, after its host,
    destination and trust checks): with a shared cache configured (``cache``, else the env/setting) and a
    full SHA256, go through it; otherwise just ``origin_fetch(dest)``."""
    shared = resolve_shared_cache(cache)
    if shared is None or len(expected_sha256 or "") != 64:
        return origin_fetch(Path(dest))
    return shared.fetch(expected_sha256, dest, origin_fetch, **options)


# --- the setting, as a settings page shows and saves it --------------------------------------------


def check_shared_cache(value: str | None) -> tuple[str | None, list[str]]:
    """The ``shared_cache`` setting as it is saved (None: off) and warnings about it for this machine.

    Instant and offline, so a settings page saves at once: the name is parsed (a store the fleet cannot
    open is a ConfigError), nothing is connected to. A folder that is not there, or a missing boto3, is
    only a warning: downloads then come from the internet, as they do when the cache is unreachable.
    """
    text = (value or "").strip()
    if not text:
        return None, []
    store = open_store(text)
    if not isinstance(store, DirectoryStore):
        if importlib.util.find_spec("boto3") is None:
            return text, [
                "boto3 is not installed here, so downloads skip the s3:// cache: pip install 'hubloader[fleet]'."
            ]
        return text, []
    if not store.root.is_absolute():
        raise ConfigError(
            f"The shared cache {text!r} is a relative path.",
            hint="Every host starts in its own folder: write the full path of the shared folder (or s3://bucket/prefix).",
        )
    if not store.root.is_dir():
        return text, [
            f"The folder {store.root} does not exist here (not mounted?): downloads come from the internet until it does."
        ]
    return text, []


def shared_cache_status() -> str:
    """One line for a settings page: whether downloads go through a shared cache, which, and who named it."""
    try:
        cache = configured_shared_cache()
    except HubloaderError as exc:
        return f"The shared cache is misconfigured, so downloads fail: {exc}"
    if cache is None:
        return "No shared cache: this machine downloads every model from the internet itself."
    named_by = f"{ENV_URL}, which overrides the setting" if os.environ.get(ENV_URL) else "the setting"
    shown = redact_url(cache.url) if "://" in cache.url else cache.url  # a path is not a URL (C:\\ …)
    return f"Downloads go through the shared cache {shown} (named by {named_by})."


# --- faces: push and pull -------------------------------------------------------------------------


def push_paths(cache: SharedCache, paths: Iterable[Path | str]) -> list[tuple[Path, str, bool]]:
    """Publish local model files (folders are walked for model files): ``(path, sha256, new)`` each."""
    from hubloader.core.metadata import MODEL_EXTENSIONS

    pushed = []
    for path in _expand(paths, MODEL_EXTENSIONS):
        sha256, new = cache.push(path)
        pushed.append((path, sha256, new))
    return pushed


def _expand(paths: Iterable[Path | str], extensions: Iterable[str]) -> list[Path]:
    wanted = {e.lower() for e in extensions}
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
        elif path.is_file():
            files.append(path)
        else:
            raise NotFound(f"{path} does not exist.", hint="Give model files or folders that hold them.")
    return files


__all__ = [
    "ENV_FALLBACK",
    "ENV_LEASE",
    "ENV_URL",
    "SharedCache",
    "SharedCacheUnavailable",
    "configured_shared_cache",
    "fetch_via_shared_cache",
    "open_shared_cache",
    "push_paths",
    "resolve_shared_cache",
]
