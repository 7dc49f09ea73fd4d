"""Lockfiles: the exact model files a workflow needs, so another machine can fetch the same bytes.

``hubloader lock workflow.json`` writes ``workflow.lock.json``; ``hubloader resolve workflow.lock.json``
fetches exactly those files (verified by SHA256) into that machine's folders.

Format (JSON, UTF-8, ``lockfile_version`` 1)::

    {
      "lockfile_version": 1,
      "generator": "hubloader 0.1.0",
      "created_at": "2026-01-01T12:00:00+00:00",
      "workflow": {"name": "workflow.json", "sha256": "<sha256 of the workflow file, or empty>"},
      "models": [
        {
          "kind": "loras",                      # ComfyUI folder kind (hubloader.core.folders.KINDS)
          "name": "styles/ink.safetensors",     # path inside that kind's folder, "/"-separated
          "size": 151234,                       # bytes
          "sha256": "<64 lower-case hex>",      # the bytes to fetch; a different file is refused
          "url": "https://huggingface.co/…/resolve/<rev>/…",   # where to fetch it; public host
          "air": "urn:air:sdxl:lora:civitai:123@456"           # CivitAI resource, when known
        }
      ]
    }

URLs are stored with their public hosts (huggingface.co, civitai.com) even when made through a mirror or
the test server; resolving rewrites them to the configured ``HF_ENDPOINT``/``CIVITAI_ENDPOINT``. An entry
needs ``url`` or a CivitAI ``air``; ``url`` wins. Unknown keys are ignored (newer minor additions), a
higher ``lockfile_version`` is refused with a message saying to upgrade Hubloader.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubloader.core.errors import HubloaderError, InvalidFile, NotFound
from hubloader.core.folders import ModelFolders, active_folders
from hubloader.core.version import __version__
from hubloader.engine.hashing import sha256_file
from hubloader.sharedcache.cache import SharedCache
from hubloader.sources.references import (
    CIVITAI,
    canonical_url,
    civitai_download_url,
    endpoint_url,
    parse_reference,
    parse_url,
)
from hubloader.workflows.finding import ModelReference
from hubloader.workflows.reading import Workflow, read_workflow
from hubloader.workflows.report import Candidate, ModelStatus, ResolutionReport, Status
from hubloader.workflows.resolver import Resolver

LOCKFILE_VERSION = 1
SUFFIX = ".lock.json"


@dataclass
class LockedModel:
    kind: str
    name: str
    size: int
    sha256: str
    url: str = ""
    air: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LockedModel:
        try:
            entry = cls(
                kind=str(data["kind"]),
                name=str(data["name"]),
                size=int(data["size"]),
                sha256=str(data["sha256"]).lower(),
                url=str(data.get("url") or ""),
                air=str(data.get("air") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidFile(f"A lockfile entry is incomplete or malformed ({exc!r}): {data!r}.") from None
        if len(entry.sha256) != 64 or any(c not in "0123456789abcdef" for c in entry.sha256):
            raise InvalidFile(f"Lockfile entry {entry.name!r} has no valid SHA256.")
        return entry


@dataclass
class Lockfile:
    models: list[LockedModel] = field(default_factory=list)
    workflow: str = ""
    workflow_sha256: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    generator: str = f"hubloader {__version__}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lockfile_version": LOCKFILE_VERSION,
            "generator": self.generator,
            "created_at": self.created_at,
            "workflow": {"name": self.workflow, "sha256": self.workflow_sha256},
            "models": [m.to_dict() for m in self.models],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Lockfile:
        if not isinstance(data, dict) or "lockfile_version" not in data:
            raise InvalidFile(
                "This is not a Hubloader lockfile (no lockfile_version).",
                hint="Lockfiles are written by locking a workflow.",
            )
        version = data["lockfile_version"]
        if not isinstance(version, int) or version > LOCKFILE_VERSION:
            raise InvalidFile(
                f"This lockfile has version {version!r}; this Hubloader reads up to {LOCKFILE_VERSION}.",
                hint="Upgrade Hubloader on this machine.",
            )
        workflow = data.get("workflow") or {}
        return cls(
            models=[LockedModel.from_dict(m) for m in data.get("models") or []],
            workflow=str(workflow.get("name") or ""),
            workflow_sha256=str(workflow.get("sha256") or ""),
            created_at=str(data.get("created_at") or ""),
            generator=str(data.get("generator") or ""),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: a reader never sees half a lockfile."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Lockfile:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidFile(f"{path} could not be read ({exc.strerror or exc}).") from None
        except ValueError as exc:
            raise InvalidFile(
                f"{path} is not valid JSON ({exc}).", hint="It must be written again by locking the workflow."
            ) from None
        return cls.from_dict(data)


def lockfile_path(workflow_path: str | os.PathLike[str]) -> Path:
    """``wf.json`` → ``wf.lock.json``; ``image.png`` → ``image.lock.json``."""
    path = Path(workflow_path)
    return path.with_name(path.stem + SUFFIX)


def lock(
    workflow: Any,
    folders: ModelFolders | None = None,
    *,
    resolver: Resolver | None = None,
    download: bool = False,
) -> Lockfile:
    """Pin every model of ``workflow``: kind, name, size, SHA256 and where to get it.

    Local files are hashed; missing ones must be resolvable to a source that states their SHA256 (or be
    fetched first with ``download=True``). A local file whose workflow entry gives no URL is looked up by
    its SHA256 in our registry (which records where Hubloader downloaded it from), then on CivitAI, so the
    lockfile still says where it comes from.
    """
    resolver = resolver or Resolver(folders)
    doc = workflow if isinstance(workflow, Workflow) else read_workflow(workflow)
    report = resolver.run(doc, download=download)
    sources = resolver.sources_by_sha256([_item_sha256(i) for i in report.items if i.is_local and not _item_url(i)])
    models, problems = [], []
    for item in report.items:
        try:
            models.append(_locked(item, resolver.folders, sources))
        except HubloaderError as exc:
            problems.append(f"{item.reference.name}: {exc.message}")
    if problems:  # NotFound, like a resolve with an unresolved model (the CLI exits 3 for both)
        raise NotFound(
            "Cannot lock this workflow: " + "; ".join(problems) + ".",
            hint="A lockfile can only list models that are present or have a known source.",
        )
    workflow_sha = sha256_file(doc.path) if doc.path and doc.path.is_file() else ""
    return Lockfile(models=models, workflow=doc.path.name if doc.path else "", workflow_sha256=workflow_sha)


def write_lockfile(
    workflow_path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, **options: Any
) -> Path:
    """Lock the workflow at ``workflow_path`` into ``output`` (default: ``<stem>.lock.json`` beside it)."""
    return lock(workflow_path, **options).save(output or lockfile_path(workflow_path))


def _item_sha256(item: ModelStatus) -> str:
    if not item.sha256 and item.path is not None:
        item.sha256 = sha256_file(item.path)
    return item.sha256


def _item_url(item: ModelStatus) -> str:
    """The URL the file downloads from: the resolver's chosen file, else the workflow's own URL; an AIR or a
    CivitAI model page names a version, not a file, so it is locked as that version's download URL."""
    url = (item.chosen.url if item.chosen else "") or item.reference.url
    return url if "/api/download/" in url else _civitai_download_url(url) or url


def _locked(item: ModelStatus, folders: ModelFolders, sources: dict[str, Candidate]) -> LockedModel:
    ref, chosen = item.reference, item.chosen
    if item.is_local and item.path is not None:
        sha, size = _item_sha256(item), item.path.stat().st_size
        name = item.use_as or ref.name
        found = sources.get(sha)
        url = _item_url(item) or (found.url if found else "")
        air = (chosen.air if chosen else "") or (found.air if found else "")
        kind = (
            ref.kind
            or (chosen.kind if chosen else "")
            or (found.kind if found else "")
            or _kind_holding(item.path, folders)
        )
    elif item.status is Status.RESOLVED and chosen is not None:
        if not item.sha256:
            raise HubloaderError(f"its source ({chosen.evidence}) does not state a SHA256")
        sha, size, url, air = item.sha256, item.size_bytes or chosen.size_bytes, chosen.url, chosen.air
        name, kind = ref.name if os.path.splitext(ref.name)[1] else chosen.file_name, ref.kind or chosen.kind
    else:
        raise HubloaderError(item.reason or "missing and not resolvable")
    if not kind:
        raise HubloaderError("its folder kind is unknown")
    return LockedModel(kind, name.replace("\\", "/"), size, sha, canonical_url(url) if url else "", air)


def _kind_holding(path: Path, folders: ModelFolders) -> str:
    resolved = path.resolve()
    for kind in folders.kinds():
        for root in folders.dirs(kind):
            if resolved.is_relative_to(root.resolve()):
                return kind
    return ""


def resolve_lockfile(
    lockfile: Lockfile | str | os.PathLike[str],
    folders: ModelFolders | None = None,
    *,
    download: bool = True,
    resolver: Resolver | None = None,
) -> ResolutionReport:
    """Make the locked files present in ``folders``: keep identical ones, fetch the rest, verified.

    A file already at the locked path is kept if its SHA256 matches and reported (never overwritten) if
    it does not. ``download=False`` only reports.
    """
    source = "" if isinstance(lockfile, Lockfile) else str(lockfile)
    locked = lockfile if isinstance(lockfile, Lockfile) else Lockfile.load(lockfile)
    resolver = resolver or Resolver(folders if folders is not None else active_folders())
    report = ResolutionReport(source=source)
    for entry in locked.models:
        report.items.append(_plan(entry, resolver.folders))
    return resolver.fetch(report) if download else report


def _plan(entry: LockedModel, folders: ModelFolders) -> ModelStatus:
    ref = ModelReference(entry.name, entry.kind, entry.url, {"SHA256": entry.sha256}, origin="lockfile")
    for root in _dirs(folders, entry.kind):
        path = root / entry.name
        if not path.is_file():
            continue
        if path.stat().st_size == entry.size and sha256_file(path) == entry.sha256:
            return ModelStatus(ref, Status.FOUND, path, use_as=entry.name, sha256=entry.sha256, size_bytes=entry.size)
        # Never replace a user's file: the locked bytes differ from what is there.
        return ModelStatus(
            ref, Status.FAILED, path, reason=f"a different file is already at {path}; move it away and run again"
        )
    url = endpoint_url(entry.url) if entry.url else _civitai_download_url(entry.air)
    if not url:
        return ModelStatus(ref, Status.UNRESOLVED, reason="the lockfile gives no URL or CivitAI AIR for it")
    source = _source_of(url)
    candidate = Candidate(
        url,
        entry.name.rsplit("/", 1)[-1],
        source,
        1.0,
        "pinned by the lockfile",
        entry.size,
        entry.sha256,
        entry.air,
        entry.kind,
    )
    return ModelStatus(
        ref,
        Status.RESOLVED,
        candidates=[candidate],
        reason=candidate.evidence,
        sha256=entry.sha256,
        size_bytes=entry.size,
    )


def _dirs(folders: ModelFolders, kind: str) -> list[Path]:
    try:
        return folders.dirs(kind)
    except HubloaderError:
        return []


def _civitai_download_url(reference: str) -> str:
    """The download URL of the version a CivitAI AIR or URL names; "" for anything else."""
    if not reference:
        return ""
    try:
        ref = parse_reference(reference)
    except HubloaderError:
        return ""
    if ref.kind != CIVITAI or ref.version_id is None:
        return ""
    return civitai_download_url(ref.version_id, ref.file_id)


def _source_of(url: str) -> str:
    try:
        return parse_url(url).kind
    except HubloaderError:
        return "url"


def pull_lockfile(lockfile: Any, folders: Any = None, *, cache: SharedCache) -> Any:
    """Place a lockfile's models from the shared cache only (never the origin); returns the report."""
    pull_only = SharedCache(cache.store, fallback="fail", lease_s=cache.lease_s, origin=False)
    return resolve_lockfile(lockfile, download=True, resolver=Resolver(folders, search=False, shared_cache=pull_only))


__all__ = [
    "LOCKFILE_VERSION",
    "LockedModel",
    "Lockfile",
    "lock",
    "lockfile_path",
    "pull_lockfile",
    "resolve_lockfile",
    "write_lockfile",
]
