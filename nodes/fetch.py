"""Turn what a node or the page names (a reference, or a file name plus a workflow URL) into a local file.

The hub layer does the work: :mod:`hubloader.refs` parses, the CivitAI/HuggingFace services resolve
and download, :mod:`hubloader.download` moves bytes. This module only decides *which folder* (a
ComfyUI kind) and *which name* (sanitised), then tells ComfyUI its listing changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubloader.errors import HubloaderError, InvalidReference
from hubloader.refs import CIVITAI, HASH, HUGGINGFACE, ModelRef, parse_reference
from hubloader.types import ModelMetadata

from . import folders

log = logging.getLogger(__name__)

#: ``(done_bytes, total_bytes)``
Progress = Callable[[int, int], None]


@dataclass
class Fetched:
    """A model file ready to load, and what its source says about it."""

    path: Path
    kind: str
    name: str  # as the kind's combo spells it
    url: str = ""
    sha256: str = ""
    metadata: ModelMetadata | None = None
    reused: bool = False
    trigger_words: list[str] = field(default_factory=list)
    recommended_weight: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "name": self.name,
            "url": self.url,
            "sha256": self.sha256,
            "reused": self.reused,
            "trigger_words": self.trigger_words,
            "recommended_weight": self.recommended_weight,
        }


#: What this process fetched, by (kind, reference text): lets IS_CHANGED and the trigger-word outputs
#: answer without the network once a reference has been fetched.
_fetched: dict[tuple[str, str], Fetched] = {}
_lock = threading.Lock()


def check_reference(text: str) -> ModelRef:
    """Parse a user's reference; InvalidReference (with the accepted forms) when it is malformed."""
    return parse_reference(text)


def fetched(kind: str, reference: str) -> Fetched | None:
    return _fetched.get((kind, reference.strip()))


def fetch(
    reference: str,
    kind: str,
    *,
    filename: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Fetched:
    """Make the model ``reference`` names present in ``kind``'s folder; download only when it is missing."""
    kind = folders.check_kind(kind)
    text = reference.strip()
    ref = check_reference(text)
    done = fetched(kind, text)
    if done is not None and done.path.is_file():
        return done
    if ref.kind == HUGGINGFACE:
        result = _fetch_huggingface(ref, kind, filename, progress, cancel)
    elif ref.kind in (CIVITAI, HASH):
        result = _fetch_civitai(ref, kind, filename, progress, cancel)
    else:  # pragma: no cover - parse_reference only returns the kinds above
        raise InvalidReference(f"Cannot fetch {text!r}.")
    folders.refresh(kind)
    with _lock:
        _fetched[(kind, text)] = result
    _remember(result)
    _register(result)
    return result


def _register(result: Fetched) -> None:
    """Record a download in the registry (library view, trigger words later); a failure here loses no file."""
    if result.metadata is None:
        return
    try:
        import sqlite3

        from hubloader.registry import ModelRegistry

        result.metadata.local_path = result.path
        registry = ModelRegistry()
        try:
            registry.register_model(result.metadata, managed=True)
        finally:
            registry.close()
    except (ImportError, HubloaderError, OSError, sqlite3.Error):
        log.warning("hubloader: could not record %s in the registry", result.path, exc_info=True)


def _progress_adapter(progress: Progress | None) -> Callable[[Any], None] | None:
    """The engine reports a DownloadProgress; nodes and jobs want (done, total). Stopping is the cancel event's job."""
    if progress is None:
        return None

    def report(event: Any) -> None:
        progress(int(event.bytes_done or 0), int(event.total or 0))

    return report


def _fetch_huggingface(
    ref: ModelRef, kind: str, filename: str | None, progress: Progress | None, cancel: threading.Event | None
) -> Fetched:
    """Into the HuggingFace cache (shared with every other HF tool), then linked into the ComfyUI folder."""
    from hubloader.hosts import safe_filename
    from hubloader.huggingface import HuggingFaceHubService, link_into
    from hubloader.refs import hf_resolve_url

    if not ref.filename:
        raise InvalidReference(
            f"{ref.text!r} names a whole repository.",
            hint="Name one file in it: owner/repo/file.safetensors (or paste the file's URL).",
        )
    name = safe_filename(filename or Path(ref.filename).name)
    dest = folders.target_dir(kind) / name
    if dest.is_file():
        return Fetched(dest, kind, folders.relative_name(kind, dest), url=hf_resolve_url(ref), reused=True)
    service = HuggingFaceHubService()
    cached = service.download_model(str(ref), progress=_progress_adapter(progress), cancel=cancel)
    placed = Path(link_into(cached, dest))
    return Fetched(placed, kind, folders.relative_name(kind, placed), url=hf_resolve_url(ref))


def _fetch_civitai(
    ref: ModelRef, kind: str, filename: str | None, progress: Progress | None, cancel: threading.Event | None
) -> Fetched:
    """CivitAIService picks the file, verifies its SHA256 and names it; we choose the folder."""
    from hubloader.civitai import CivitAIService

    service = CivitAIService()
    target: Any = ref if ref.kind == CIVITAI else service.lookup(ref).model_id
    result = service.download_model(
        target, download_dir=folders.target_dir(kind), progress=_progress_adapter(progress), cancel=cancel
    )
    path = Path(result.path)
    if filename and path.name != filename:  # a workflow names the file: keep its name so it loads as written
        from hubloader.hosts import safe_filename

        wanted = path.with_name(safe_filename(filename))
        if not wanted.exists():
            path = path.replace(wanted)
    meta = result.metadata
    return Fetched(
        path,
        kind,
        folders.relative_name(kind, path),
        url=_civitai_download_url(meta),
        sha256=result.sha256,
        metadata=meta,
        reused=result.reused,
        trigger_words=list(getattr(meta, "trigger_words", []) or []),
        recommended_weight=getattr(meta, "recommended_weight", None),
    )


def _civitai_download_url(meta: Any) -> str:
    """The version's download link: what a shared workflow's ``properties.models`` should carry."""
    from hubloader.config import civitai_endpoint

    version = getattr(meta, "version_id", "")
    return f"{civitai_endpoint()}/api/download/models/{version}" if version else getattr(meta, "remote_url", "")


# -- what we know about a local file ------------------------------------------------------------------

_described: dict[str, tuple[list[str], float | None]] = {}


def _remember(result: Fetched) -> None:
    if result.trigger_words or result.recommended_weight is not None:
        _described[str(result.path)] = (result.trigger_words, result.recommended_weight)


def describe(path: Path) -> tuple[list[str], float | None]:
    """Trigger words and recommended weight of a local file: what we fetched, else the registry, else its header."""
    key = str(path)
    if key in _described:
        return _described[key]
    words: list[str] = []
    weight: float | None = None
    meta = _registry_lookup(path)
    if meta is not None:
        words, weight = list(meta.trigger_words), meta.recommended_weight
    if not words:
        words = _header_trigger_words(path)
    _described[key] = (words, weight)
    return words, weight


def _registry_lookup(path: Path) -> ModelMetadata | None:
    try:
        from hubloader.registry import ModelRegistry

        registry = ModelRegistry()
        try:
            for key in (path.name, path.stem):
                meta = registry.find_model(key)
                if meta is not None and meta.local_path and Path(meta.local_path) == path:
                    return meta
        finally:
            registry.close()
    except (ImportError, HubloaderError, OSError):
        return None
    return None


def _header_trigger_words(path: Path) -> list[str]:
    try:
        from hubloader import inspect as model_inspect

        info = model_inspect.inspect_file(path)
    except (ImportError, AttributeError, HubloaderError, OSError, ValueError):
        return []
    return list(getattr(info, "trigger_words", []) or [])


def known_source(path: Path) -> tuple[str, str] | None:
    """(download URL, sha256) of a local file we fetched or the registry knows; None when unknown."""
    for done in list(_fetched.values()):
        if done.path == path and done.url:
            return done.url, done.sha256
    meta = _registry_lookup(path)
    if meta is not None and (meta.remote_url or meta.sha256):
        return _civitai_download_url(meta) if meta.source.value == "civitai" else meta.remote_url, meta.sha256
    return None
