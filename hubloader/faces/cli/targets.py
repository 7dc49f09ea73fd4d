"""What a ``get`` names before any byte moves: its file(s), their size and SHA256, and where each would land.

``--include``/``--exclude`` turn a repository (HuggingFace) or a version (CivitAI) into several files;
``--dry-run`` prints these targets; ``--force`` moves the file already at a target's place aside first.
Asking the sources here costs one metadata request per repository or version, the same one ``get`` asks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubloader.core.errors import InvalidReference, NotFound
from hubloader.core.folders import ModelFolders, kind_of, safe_filename
from hubloader.core.metadata import ModelType
from hubloader.faces.cli.output import UsageError
from hubloader.sources.references import CIVITAI, HASH, HUGGINGFACE, ModelRef, parse_reference


@dataclass
class Target:
    """One file a ``get`` would fetch: what to hand :func:`hubloader.pipeline.fetch`, and what it is."""

    what: str | ModelRef  # the reference of this very file
    name: str  # the file's name at its source
    size_bytes: int
    sha256: str
    kind: str  # the host folder kind it goes to (loras, checkpoints …)

    def dest(self, folders: ModelFolders | Path, filename: str | None = None) -> Path:
        """Where it lands (before a same-named different file sends it apart)."""
        folder = Path(folders).expanduser() if isinstance(folders, (str, Path)) else folders.target(self.kind)
        return (folder / safe_filename(filename or Path(self.name).name)).absolute()


def service_of(text: str) -> str:
    """Which service a reference speaks to: ``huggingface``, ``civitai`` (a hash asks CivitAI) or ``""`` (a URL)."""
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return ""
    return HUGGINGFACE if ref.kind == HUGGINGFACE else CIVITAI if ref.kind in (CIVITAI, HASH) else ""


def targets(
    text: str,
    *,
    kind: ModelType | None = None,
    revision: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Target]:
    """The file(s) ``text`` names: one, or with ``include``/``exclude`` globs, those of its repo/version that match."""
    ref = parse_reference(text)
    folder_kind = kind_of(kind) if kind is not None else None
    many = bool(include or exclude)
    if ref.kind == HUGGINGFACE:
        return _hf_targets(ref, folder_kind, revision, include, exclude, many)
    if ref.kind in (CIVITAI, HASH):
        return _civitai_targets(ref, folder_kind, revision, include, exclude, many)
    raise InvalidReference(f"{text} names no HuggingFace or CivitAI model.")


def _selected(names: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Names matching one ``include`` glob (all when none) and no ``exclude`` glob (``hf download``'s rule)."""
    return [
        n
        for n in names
        if (not include or any(fnmatch.fnmatch(n, p) for p in include))
        and not any(fnmatch.fnmatch(n, p) for p in exclude)
    ]


def _hf_targets(
    ref: ModelRef,
    kind: str | None,
    revision: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    many: bool,
) -> list[Target]:
    from hubloader.pipeline import root_weights
    from hubloader.sources.huggingface import HuggingFaceHubService, file_type

    service = HuggingFaceHubService()
    rev = ref.revision or revision or "main"
    if ref.filename and many:
        raise UsageError(f"{ref} names one file; --include/--exclude pick files of a repository (owner/repo).")
    repo = service.model_info(str(ref.repo_id), revision=rev)
    if ref.filename:
        names = [ref.filename]
    elif many:
        names = _selected([f.name for f in repo.files], include, exclude)
    else:
        names = root_weights(repo)
        if len(names) != 1:
            raise NotFound(
                f"{ref.repo_id} has {'no' if not names else 'several'} model files at its root"
                + (f" ({', '.join(names)})." if names else "."),
                hint="Name one (owner/repo/path/file.safetensors) or pick them with --include.",
            )
    if not names:
        raise NotFound(f"No file of {ref.repo_id} matches {_globs(include, exclude)}.")
    files = {f.name: f for f in repo.files}
    found = []
    for name in names:
        if name not in files:
            raise NotFound(f"{name} does not exist in {ref.repo_id} at {rev}.")
        file_kind = kind or kind_of(file_type(repo, name))
        what = f"{ref.repo_id}@{rev}/{name}" if rev != "main" else f"{ref.repo_id}/{name}"
        found.append(Target(what, name, files[name].size_bytes, files[name].sha256, file_kind))
    return found


def _civitai_targets(
    ref: ModelRef,
    kind: str | None,
    revision: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    many: bool,
) -> list[Target]:
    from hubloader.pipeline import civitai_file_with_hash, reference_of
    from hubloader.sources.civitai import CivitAIService, pick_file

    service = CivitAIService()
    if ref.kind == HASH:
        ref = civitai_file_with_hash(service.lookup(ref), ref.hash or "")
    version = int(revision) if revision and revision.strip().isdigit() else None
    meta = service.get_model_details(ref, version)
    files: list[dict[str, Any]] = list(meta.extra.get("civitai_files") or [])
    if many:
        chosen = [
            f for f in files if str(f.get("name")) in _selected([str(f.get("name")) for f in files], include, exclude)
        ]
        if not chosen:
            raise NotFound(f"No file of CivitAI model {meta.name!r} matches {_globs(include, exclude)}.")
    else:
        one = pick_file(files, meta.type, file_id=ref.file_id, params=dict(ref.download_params))
        if one is None:
            raise NotFound(f"CivitAI model {meta.name!r} version {meta.version!r} has no downloadable model file.")
        chosen = [one]
    folder_kind = kind or kind_of(meta.type)
    found = []
    for f in chosen:
        sha = str((f.get("hashes") or {}).get("SHA256") or "").lower()
        size = int(float(str(f.get("sizeKB") or 0)) * 1024)
        what = reference_of(meta, str(f.get("name"))) if many else ref
        found.append(Target(what, str(f.get("name")), size, sha, folder_kind))
    return found


def _globs(include: Sequence[str], exclude: Sequence[str]) -> str:
    return " ".join([*(f"--include {p!r}" for p in include), *(f"--exclude {p!r}" for p in exclude)])
