"""Lockfiles: the exact model files a workflow needs, so another machine can fetch the same bytes.

``hubloader lock workflow.json`` writes ``workflow.lock.json``; ``hubloader resolve workflow.lock.json``
fetches exactly those files (verified by SHA256) into that machine's folders.

Format (JSON, UTF-8, ``lockfile_version`` 2; version 1 files are read as well)::

    {
      "lockfile_version": 2,
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
          "air": "urn:air:sdxl:lora:civitai:123@456",          # CivitAI resource, when known
          "revision": "<40 hex>",               # v2: the HuggingFace commit that served these bytes, or ""
          "version_id": 456, "file_id": 789,    # v2: the CivitAI version and file, or null
          "required": true,                     # v2: false for a model only listed, not loaded by a node
          "needs": [{"what": "licence", "service": "huggingface", "url": "https://huggingface.co/org/repo"}]
                                                # v2: what fetching it needs (token, licence, early_access,
                                                # login, downloads_disabled, archived), as last seen
        }
      ]
    }

URLs are stored with their public hosts (huggingface.co, civitai.com) even when made through a mirror or
the test server; resolving rewrites them to the configured ``HF_ENDPOINT``/``CIVITAI_ENDPOINT``. An entry
needs ``url`` or a CivitAI ``air``; ``url`` wins. Unknown keys are ignored (newer minor additions), a
higher ``lockfile_version`` is refused with a message saying to upgrade Hubloader. A version 1 file reads as
version 2 with no revisions, every model required and no needs recorded; it is written back as version 2.

``sha256`` is the pin: :func:`update_lockfile` (``hubloader lock --update``) refreshes where and how the bytes
are fetched, never which bytes.
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
from hubloader.core.settings import redact_url
from hubloader.core.version import __version__
from hubloader.engine.hashing import sha256_file
from hubloader.library.hashcache import HashCache
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
from hubloader.workflows.probe import Probe, civitai_ids, probe
from hubloader.workflows.reading import Workflow, read_workflow
from hubloader.workflows.report import Candidate, ModelStatus, ResolutionReport, Status
from hubloader.workflows.resolver import Resolver

LOCKFILE_VERSION = 2
SUFFIX = ".lock.json"


@dataclass
class LockedModel:
    kind: str
    name: str
    size: int
    sha256: str
    url: str = ""
    air: str = ""
    revision: str = ""
    version_id: int | None = None
    file_id: int | None = None
    required: bool = True
    needs: list[dict[str, str]] = field(default_factory=list)

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
                revision=str(data.get("revision") or ""),
                version_id=_int_or_none(data.get("version_id")),
                file_id=_int_or_none(data.get("file_id")),
                required=bool(data.get("required", True)),
                needs=[{str(k): str(v) for k, v in n.items()} for n in data.get("needs") or [] if isinstance(n, dict)],
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


def _int_or_none(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def is_lockfile(path: Path) -> bool:
    """Whether ``path`` is a lockfile: by its suffix, else by its ``lockfile_version`` key."""
    if path.name.endswith(SUFFIX):
        return True
    if path.suffix.lower() != ".json":
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "lockfile_version" in data


def is_required(ref: ModelReference) -> bool:
    """A model a node loads is required; one only listed in a workflow's models list is optional."""
    return bool(ref.uses) or ref.origin != "models"


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
    facts: bool = True,
) -> Lockfile:
    """Pin every model of ``workflow``: kind, name, size, SHA256 and where to get it.

    ``facts``: also ask each source (one HEAD/un-followed GET, no bytes) for the revision it serves and what a
    download needs (token, licence, early access…), recorded as lockfile version 2 keeps them.

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
            entry = _locked(item, resolver.folders, sources)
            entry.required = is_required(item.reference)
            if facts:
                record_facts(entry)
            models.append(entry)
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


def fetch_url(entry: LockedModel) -> str:
    """Where an entry's bytes are asked for on this machine: its URL on the configured endpoint, else its AIR's."""
    return endpoint_url(entry.url) if entry.url else _civitai_download_url(entry.air)


def record_facts(entry: LockedModel) -> Probe:
    """Ask the entry's source what it serves and needs; keep the revision, CivitAI ids and needs it states."""
    url = fetch_url(entry)
    answer = probe(url) if url else Probe(reason="no source")
    entry.revision = answer.revision or entry.revision
    version_id, file_id = civitai_ids(url) if url else (None, None)
    entry.version_id = answer.version_id or version_id or entry.version_id
    entry.file_id = answer.file_id or file_id or entry.file_id
    if answer.ok or answer.needs:  # a token sent and accepted says nothing of whether one is needed
        entry.needs = [
            {"what": n.what, "service": n.service, "url": n.url}
            for n in answer.needs
            if not (n.what == "token" and n.met)
        ]
    return answer


def update_lockfile(path: str | os.PathLike[str], *, resolver: Resolver | None = None) -> tuple[Lockfile, list[str]]:
    """Refresh every entry's source facts (revision, CivitAI ids, needs) without changing its pinned bytes.

    A source that now serves other bytes is reported and left as it was; a source that is gone is replaced by
    another serving the same SHA256 when one is known (our registry, CivitAI by hash), else reported. Returns
    the updated lockfile (not saved) and one line per thing to tell.
    """
    locked = Lockfile.load(path)
    resolver = resolver or Resolver()
    notes: list[str] = []
    for entry in locked.models:
        url = fetch_url(entry)
        answer = probe(url) if url else Probe(gone=True, reason="no source")
        other = _other_bytes(entry, answer, resolver)
        if other:
            notes.append(f"{entry.name}: {other}; the pin (SHA256 {entry.sha256}) is kept, the new bytes not accepted")
            continue
        if answer.gone:
            notes.append(_replace_gone(entry, answer.reason, resolver))
            continue
        if answer.moved_to and entry.url:
            notes.append(_follow_rename(entry, answer.moved_to))
        before = (entry.revision, entry.version_id, entry.file_id, entry.needs)
        record_facts(entry)
        if (entry.revision, entry.version_id, entry.file_id, entry.needs) != before:
            notes.append(f"{entry.name}: source facts refreshed (revision {entry.revision or '-'})")
    return locked, notes


def _other_bytes(entry: LockedModel, answer: Probe, resolver: Resolver) -> str:
    """Why the entry's source now serves bytes other than the pinned ones ("" when it does not, or cannot tell)."""
    if answer.sha256 and answer.sha256 != entry.sha256:
        return f"its source now serves other bytes (SHA256 {answer.sha256})"
    if answer.ok and answer.version_id is not None:
        try:
            meta = resolver.civitai.get_model_version(answer.version_id)
        except HubloaderError:
            return ""
        served = {f.sha256.lower() for f in meta.files if f.sha256}
        if served and entry.sha256 not in served:
            return f"CivitAI version {answer.version_id} no longer lists a file with the pinned SHA256"
    return ""


def _follow_rename(entry: LockedModel, new_repo: str) -> str:
    """A renamed HuggingFace repository: the entry's URL names the new one (same file, same pinned bytes)."""
    old_repo = parse_url(entry.url).repo_id or ""
    entry.url = entry.url.replace(f"/{old_repo}/", f"/{new_repo}/", 1)
    return f"{entry.name}: its repository {old_repo} was renamed {new_repo}; the URL follows it"


def _replace_gone(entry: LockedModel, reason: str, resolver: Resolver) -> str:
    found = resolver.sources_by_sha256([entry.sha256]).get(entry.sha256)
    if found is None or found.sha256 != entry.sha256:
        return f"{entry.name}: its source is gone ({reason}) and no other source serves the same SHA256"
    entry.url, entry.air = canonical_url(found.url), found.air or entry.air
    record_facts(entry)
    return f"{entry.name}: its source is gone ({reason}); now {redact_url(entry.url)}, serving the same SHA256"


def _item_sha256(item: ModelStatus) -> str:
    if not item.sha256 and item.path is not None:
        item.sha256 = _cached_sha256(item.path)
    return item.sha256


def _cached_sha256(path: Path) -> str:
    """A model file's SHA256 through the hash cache: an unchanged file is not read again."""
    cache = HashCache()
    try:
        return cache.sha256(path)
    finally:
        cache.close()


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
        if path.stat().st_size == entry.size and _cached_sha256(path) == entry.sha256:
            return ModelStatus(ref, Status.FOUND, path, use_as=entry.name, sha256=entry.sha256, size_bytes=entry.size)
        # Never replace a user's file: the locked bytes differ from what is there.
        return ModelStatus(
            ref, Status.FAILED, path, reason=f"a different file is already at {path}; move it away and run again"
        )
    url = fetch_url(entry)
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
    "fetch_url",
    "is_lockfile",
    "record_facts",
    "lock",
    "lockfile_path",
    "pull_lockfile",
    "resolve_lockfile",
    "update_lockfile",
    "write_lockfile",
]
