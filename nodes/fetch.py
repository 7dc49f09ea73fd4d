"""Turn what a node or the page names (a reference, or a file name plus a workflow URL) into a local file.

The hub layer does the work: :mod:`hubloader.sources.references` parses, :mod:`hubloader.pipeline` downloads, verifies,
describes and records (the same pipeline as the command line and the Model Hub app). This module only
decides *which folder* (a ComfyUI kind) and *which name*, then tells ComfyUI its listing changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubloader.core.errors import HubloaderError, InvalidReference
from hubloader.core.metadata import ModelMetadata
from hubloader.sources.references import HUGGINGFACE, ModelRef, parse_reference

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


#: What this process fetched, by (target folder, kind, reference text): a node run again with the same
#: reference answers without the network (CivitAI would be asked for the version to compare hashes).
#: The folder is part of the key: ComfyUI's folders can change (extra_model_paths, tests' temporary roots).
_fetched: dict[tuple[str, str, str], Fetched] = {}
_lock = threading.Lock()


def check_reference(text: str) -> ModelRef:
    """Parse a user's reference; InvalidReference (with the accepted forms) when it is malformed."""
    return parse_reference(text)


def _key(kind: str, reference: str) -> tuple[str, str, str]:
    return str(folders.target_dir(kind)), kind, reference.strip()


def fetched(kind: str, reference: str) -> Fetched | None:
    """What this process fetched for ``reference`` into ``kind``'s current folder, if its file is still there."""
    done = _fetched.get(_key(kind, reference))
    return done if done is not None and done.path.is_file() else None


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
    if done is not None:
        return done
    result = _present(ref, kind, filename) or _place(ref, kind, filename, progress, cancel)
    folders.refresh(kind)
    with _lock:
        _fetched[_key(kind, text)] = result
    _remember(result)
    return result


def _present(ref: ModelRef, kind: str, filename: str | None) -> Fetched | None:
    """A HuggingFace file already in the folder: used as is, without the network (ComfyUI often runs offline,
    and the loader would load that name anyway). Its own subfolder (``owner__repo/…``, where a same-named
    different file sent it) always counts; its plain name only offline, since another repository's file of
    that name may be there (online, the pipeline compares it with the published SHA256 before any byte)."""
    from hubloader.core.settings import hf_offline
    from hubloader.pipeline import hf_apart
    from hubloader.sources.references import hf_resolve_url

    if ref.kind != HUGGINGFACE:
        return None
    if not ref.filename:  # a node loads one file; a repository may hold many, or be a diffusers folder
        raise InvalidReference(
            f"{ref.text!r} names a whole repository.",
            hint="Name one file in it: owner/repo/file.safetensors (or paste the file's URL).",
        )
    folder, name = _destination(kind, filename or Path(ref.filename).name)
    plain = folder / name
    if filename is not None:  # the workflow's own name
        candidates = [plain]
    else:
        apart = folders.target_dir(kind) / hf_apart(ref.repo_id, ref.filename)
        candidates = [apart, plain] if hf_offline() else [apart]
    for dest in candidates:
        if dest.is_file():
            return Fetched(dest, kind, folders.relative_name(kind, dest), url=hf_resolve_url(ref), reused=True)
    return None


def _destination(kind: str, filename: str) -> tuple[Path, str]:
    """The folder and plain name of ``filename``, a name relative to ``kind``'s folder as a workflow spells it
    (``owner__repo/style-0.safetensors`` keeps its subfolder, so the loader finds it under that name)."""
    from hubloader.core.folders import safe_filename
    from hubloader.gate.policy import check_repo_path

    relative = check_repo_path(filename.replace("\\", "/"))
    parent, _, name = relative.rpartition("/")
    return folders.target_dir(kind) / parent, safe_filename(name)


def _place(
    ref: ModelRef, kind: str, filename: str | None, progress: Progress | None, cancel: threading.Event | None
) -> Fetched:
    """The hub layer downloads, verifies, describes and records; we give ComfyUI's folder for the kind."""
    from hubloader import pipeline as place

    folder, name = _destination(kind, filename) if filename else (folders.target_dir(kind), None)
    placed = place.fetch(
        ref,
        folder,
        kind=kind,
        save_as=name,
        progress=place.progress_in_bytes(progress),
        cancel=cancel,
    )
    meta = register(placed) or placed.source
    return Fetched(
        placed.path,
        kind,
        folders.relative_name(kind, placed.path),
        url=placed.url,
        sha256=placed.sha256,
        metadata=meta,
        reused=placed.reused,
        trigger_words=list(meta.trigger_words) if meta is not None else [],
        recommended_weight=meta.recommended_weight if meta is not None else None,
    )


def register(placed: Any) -> ModelMetadata | None:
    """Describe the file, write its sidecars, record it in the registry; a failure here loses no file."""
    try:
        import sqlite3

        from hubloader.pipeline import record
        from hubloader.registry import ModelRegistry

        with ModelRegistry() as registry:
            return record(placed, registry)
    except (ImportError, HubloaderError, OSError, sqlite3.Error):
        log.warning("hubloader: could not record %s in the registry", placed.path, exc_info=True)
        return None


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
        from hubloader.library import inspection as model_inspect

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
        from hubloader.pipeline import download_url

        return download_url(meta), meta.sha256
    return None


# -- what a workflow needs to fetch a source again ----------------------------------------------------


def models_entry(reference: str, kind: str) -> dict[str, object]:
    """The ``properties.models`` entry of the file ``reference`` names, as ComfyUI's missing-models check reads
    it (``name`` as the file will be placed, after the collision rule; ``url``; ``directory``; ``hash``), and
    whether that very file is there already. Asks the source for metadata only; nothing is downloaded."""
    from hubloader import pipeline as place

    kind = folders.check_kind(kind)
    text = reference.strip()
    ref = check_reference(text)
    done = fetched(kind, text)
    if done is not None:
        name, url, sha256, exists = done.name, done.url, done.sha256, True
    else:
        planned = place.plan(ref, folders.target_dir(kind), kind=kind)
        name, url, sha256, exists = (
            folders.relative_name(kind, planned.path),
            planned.url,
            planned.sha256,
            planned.exists,
        )
    entry: dict[str, str] = {"name": name, "url": url, "directory": kind}  # as ComfyUI lists it: the combo matches
    if sha256:
        entry.update(hash=sha256.lower(), hash_type="SHA256")
    return {"model": entry, "exists": exists}
