"""Verifying a workflow's models on disk against their pinned SHA256s: missing, changed and extra models.

The pins come from a lockfile (given, or ``<stem>.lock.json`` beside the workflow), else from the hashes the
workflow carries itself (``properties.models`` / ``models`` entries, our nodes' pins): a full SHA256 only —
a short hash cannot prove a file is the same. Files are hashed through :class:`~hubloader.library.hashcache.
HashCache`, so verifying unchanged files reads none of them.

Statuses: ``ok`` (same bytes), ``changed`` (the file differs: both hashes given), ``missing`` (no file),
``extra`` (the workflow uses a model the lockfile does not pin: nothing to check it against), ``unpinned``
(a workflow without a lockfile names a model with no SHA256).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubloader.core.folders import ModelFolders
from hubloader.library.hashcache import HashCache
from hubloader.workflows.finding import ModelReference, find_references, norm_name
from hubloader.workflows.local import LocalIndex, folder_dirs
from hubloader.workflows.lockfile import Lockfile, is_lockfile, lockfile_path
from hubloader.workflows.reading import Workflow, read_workflow

OK, CHANGED, MISSING, EXTRA, UNPINNED = "ok", "changed", "missing", "extra", "unpinned"
#: The statuses that make a verification fail.
PROBLEMS = frozenset({CHANGED, MISSING, EXTRA})


@dataclass
class Pin:
    """One model to check: where it is looked for and the SHA256 it must have."""

    name: str
    kind: str
    sha256: str
    size: int | None = None


@dataclass
class VerifiedModel:
    name: str
    kind: str
    status: str
    path: str = ""
    expected: str = ""  # the pinned SHA256
    actual: str = ""  # the file's SHA256 ("" when missing or not hashed)

    def message(self) -> str:
        """One line about a problem, naming the file and both hashes."""
        if self.status == CHANGED:
            return f"{self.path} changed: its SHA256 is {self.actual}, the pin says {self.expected}"
        if self.status == MISSING:
            return f"{self.kind}/{self.name} is missing (pinned SHA256 {self.expected})"
        if self.status == EXTRA:
            return f"{self.kind}/{self.name} is used by the workflow but not pinned by its lockfile"
        return f"{self.kind}/{self.name}: {self.status}"


@dataclass
class VerifyReport:
    source: str = ""
    pins_from: str = ""  # the lockfile, "workflow" (its own hashes), or "" when nothing is pinned
    models: list[VerifiedModel] = field(default_factory=list)

    @property
    def problems(self) -> list[VerifiedModel]:
        return [m for m in self.models if m.status in PROBLEMS]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        counts = {s: sum(1 for m in self.models if m.status == s) for s in (OK, CHANGED, MISSING, EXTRA, UNPINNED)}
        return {
            "source": self.source,
            "pins_from": self.pins_from,
            "ok": self.ok,
            "counts": counts,
            "models": [asdict(m) for m in self.models],
        }

    def to_json(self, **options: Any) -> str:
        return json.dumps(self.to_dict(), **options)


def pins_of(file: str | os.PathLike[str] | Workflow | dict[str, object]) -> tuple[list[Pin], list[ModelReference], str]:
    """(pins, the workflow's references or [], where the pins come from) for a lockfile or a workflow."""
    if isinstance(file, (str, os.PathLike)) and is_lockfile(Path(file)):
        locked = Lockfile.load(file)
        beside = Path(file).with_name(locked.workflow) if locked.workflow else None
        refs = find_references(beside) if beside is not None and beside.is_file() else []
        return [Pin(m.name, m.kind, m.sha256, m.size) for m in locked.models], refs, str(file)
    doc = file if isinstance(file, Workflow) else read_workflow(file)
    refs = find_references(doc)
    lock = lockfile_path(doc.path) if doc.path else None
    if lock is not None and lock.is_file():
        locked = Lockfile.load(lock)
        return [Pin(m.name, m.kind, m.sha256, m.size) for m in locked.models], refs, str(lock)
    pins = [Pin(r.name, r.kind, r.sha256) for r in refs if r.sha256]
    return pins, refs, "workflow" if pins else ""


def verify(
    file: str | os.PathLike[str] | Workflow | dict[str, object],
    folders: ModelFolders,
    *,
    hashes: HashCache | None = None,
) -> VerifyReport:
    """Check every pinned model of ``file`` on disk (see the module docstring)."""
    hashes = hashes or HashCache()
    pins, refs, pins_from = pins_of(file)
    source = str(file) if isinstance(file, (str, os.PathLike)) else ""
    report = VerifyReport(source=source, pins_from=pins_from)
    index = LocalIndex(folders)
    for pin in pins:
        report.models.append(_check(pin, folders, index, hashes))
    pinned = {(p.kind, norm_name(p.name)) for p in pins} | {("", norm_name(p.name)) for p in pins}
    for ref in refs:
        if (ref.kind, norm_name(ref.name)) in pinned or ("", norm_name(ref.name)) in pinned:
            continue
        if pins_from and pins_from != "workflow":
            report.models.append(VerifiedModel(ref.name, ref.kind, EXTRA))
        elif not ref.sha256:
            report.models.append(VerifiedModel(ref.name, ref.kind, UNPINNED))
    return report


def _check(pin: Pin, folders: ModelFolders, index: LocalIndex, hashes: HashCache) -> VerifiedModel:
    path = _locate(pin, folders, index)
    if path is None:
        return VerifiedModel(pin.name, pin.kind, MISSING, expected=pin.sha256)
    actual = hashes.sha256(path)
    status = OK if actual == pin.sha256 else CHANGED
    return VerifiedModel(pin.name, pin.kind, status, str(path), pin.sha256, actual)


def _locate(pin: Pin, folders: ModelFolders, index: LocalIndex) -> Path | None:
    """The file a loader would open: the pinned path in one of the kind's folders, else the workflow's match."""
    parts = [p for p in norm_name(pin.name).split("/") if p]
    if parts and ".." not in parts:
        for root in folder_dirs(folders, pin.kind) if pin.kind else []:
            candidate = root.joinpath(*parts)
            if candidate.is_file():
                return candidate
    hit = index.find(ModelReference(pin.name, pin.kind))
    return hit[1] if hit is not None else None


__all__ = [
    "CHANGED",
    "EXTRA",
    "MISSING",
    "OK",
    "UNPINNED",
    "Pin",
    "VerifiedModel",
    "VerifyReport",
    "pins_of",
    "verify",
    "verify_file",
]


def verify_file(
    file: str | os.PathLike[str] | Workflow | dict[str, object],
    folders: ModelFolders | None = None,
    *,
    hashes: HashCache | None = None,
) -> VerifyReport:
    """:func:`verify` in the active host's folders by default: ``hubloader.verify("wf.lock.json")``."""
    from hubloader.core.folders import active_folders

    return verify(file, folders if folders is not None else active_folders(), hashes=hashes)
