"""An install plan as data: :class:`InstallPlan` of :class:`PlannedModel` s, their :class:`PlannedSource` s and
the :class:`FilesystemTotal` s, with ``to_dict()``/``to_json()`` — the contract every face renders (the JSON is
documented in the README's "Install plans"). Built by :class:`hubloader.workflows.plan.Planner`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from hubloader.core.settings import redact_url
from hubloader.core.units import human_size
from hubloader.workflows.finding import ModelReference
from hubloader.workflows.probe import Need, civitai_ids
from hubloader.workflows.report import Candidate


class PlanStatus(str, Enum):
    PRESENT = "present"  # on disk where the workflow looks, with the right bytes (when a hash says which)
    PRESENT_ELSEWHERE = "present_elsewhere"  # same bytes under another name/folder: use, link or copy it
    RESOLVABLE = "resolvable"  # a source serves it: see `source`, `needs`, `can_fetch`
    AMBIGUOUS = "ambiguous"  # several different files fit: see `candidates`
    UNAVAILABLE = "unavailable"  # no source can give it now: see `reason`

    def __str__(self) -> str:
        return self.value


@dataclass
class PlannedSource:
    """A place the bytes come from. ``same_bytes``: it serves the pinned SHA256 (False: a similar file only)."""

    url: str
    service: str
    confidence: float
    evidence: str
    file_name: str = ""
    size: int = 0
    sha256: str = ""
    model: str = ""
    air: str = ""
    revision: str = ""  # the HuggingFace commit it serves
    version_id: int | None = None  # CivitAI
    file_id: int | None = None
    same_bytes: bool = True
    note: str = ""

    @classmethod
    def of(cls, candidate: Candidate, **extra: Any) -> PlannedSource:
        version_id, file_id = civitai_ids(candidate.url)
        return cls(
            candidate.url, candidate.source, candidate.confidence, candidate.evidence, candidate.file_name,
            candidate.size_bytes, candidate.sha256, candidate.model, candidate.air,
            version_id=version_id, file_id=file_id, **extra,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "url": redact_url(self.url)}


@dataclass
class PlannedModel:
    """One model of the plan. ``reuse``: how a present-elsewhere file serves ("use_as": point the loader at
    ``use_as``; "link"/"copy": to ``destination``). ``can_fetch``/``why_not``: whether "fetch all" includes it."""

    name: str
    kind: str
    status: PlanStatus
    reason: str = ""
    required: bool = True
    path: str = ""
    use_as: str = ""
    reuse: str = ""
    file_name: str = ""
    size: int = 0
    sha256: str = ""
    destination: str = ""
    source: PlannedSource | None = None
    alternatives: list[PlannedSource] = field(default_factory=list)  # other places with the same SHA256
    similar: list[PlannedSource] = field(default_factory=list)  # NOT the same bytes
    candidates: list[PlannedSource] = field(default_factory=list)  # an ambiguous model's choices
    needs: list[Need] = field(default_factory=list)
    can_fetch: bool = False
    why_not: str = ""
    #: The workflow's reference, kept to fetch it (not part of the JSON).
    reference: ModelReference | None = field(default=None, repr=False, compare=False)

    @property
    def fetches(self) -> bool:
        """Whether fetching it moves bytes over the network (what the totals count)."""
        return self.status is PlanStatus.RESOLVABLE and self.can_fetch

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reference")
        data["status"] = self.status.value
        for key in ("alternatives", "similar", "candidates"):
            data[key] = [s.to_dict() for s in getattr(self, key)]
        data["source"] = self.source.to_dict() if self.source else None
        return data


@dataclass
class FilesystemTotal:
    """The bytes to fetch onto one file system (named by the first destination folder on it)."""

    path: str
    bytes_to_fetch: int
    free: int
    models: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.bytes_to_fetch <= self.free

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits": self.fits}


@dataclass
class InstallPlan:
    source: str = ""
    models: list[PlannedModel] = field(default_factory=list)
    filesystems: list[FilesystemTotal] = field(default_factory=list)
    speed_bps: float | None = None  # measured on the last downloads; None: none recorded

    @property
    def bytes_to_fetch(self) -> int:
        return sum(m.size for m in self.models if m.fetches)

    @property
    def files_reused(self) -> int:
        return sum(1 for m in self.models if m.status is PlanStatus.PRESENT_ELSEWHERE)

    @property
    def seconds_estimate(self) -> float | None:
        return self.bytes_to_fetch / self.speed_bps if self.speed_bps else None

    @property
    def fetchable(self) -> list[PlannedModel]:
        """What "Fetch all" fetches: the models that can succeed now."""
        return [m for m in self.models if m.fetches]

    @property
    def blocked(self) -> list[PlannedModel]:
        """Missing models that cannot be fetched now, each with ``why_not``."""
        local = (PlanStatus.PRESENT, PlanStatus.PRESENT_ELSEWHERE)
        return [m for m in self.models if m.status not in local and not m.can_fetch]

    def summary_lines(self) -> list[str]:
        """The plan's verdict in plain lines, as every face shows it under its table: per destination file system
        what is fetched against what is free, the totals with a time estimate, then why each blocked model
        cannot be fetched now (a similar file that is not the same bytes is named too)."""
        lines = [
            f"  {m.name}: {similar.evidence} is NOT the same file (other SHA256); not offered."
            for m in self.models
            for similar in m.similar
        ]
        for fs in self.filesystems:
            verdict = "fits" if fs.fits else "DOES NOT FIT"
            lines.append(
                f"Disk of {fs.path}: {human_size(fs.bytes_to_fetch)} to fetch, {human_size(fs.free)} free: {verdict}."
            )
        eta = self.seconds_estimate
        speed = (
            f", about {duration(eta)} at the {human_size(int(self.speed_bps or 0))}/s of the last downloads"
            if eta
            else ""
        )
        lines.append(
            f"{len(self.fetchable)} to fetch ({human_size(self.bytes_to_fetch)}){speed}; "
            f"{self.files_reused} reused from disk; {len(self.blocked)} cannot be fetched now."
        )
        lines.extend(f"  {m.name}: {m.why_not or m.reason}" for m in self.blocked)
        return lines

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in PlanStatus}
        for model in self.models:
            counts[model.status.value] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_version": 1,
            "source": self.source,
            "counts": self.counts(),
            "models": [m.to_dict() for m in self.models],
            "totals": {
                "bytes_to_fetch": self.bytes_to_fetch,
                "files_to_fetch": len(self.fetchable),
                "files_reused": self.files_reused,
                "blocked": len(self.blocked),
                "speed_bps": self.speed_bps,
                "seconds_estimate": self.seconds_estimate,
                "filesystems": [f.to_dict() for f in self.filesystems],
            },
            "can_fetch_all": not self.blocked,
        }

    def to_json(self, **options: Any) -> str:
        return json.dumps(self.to_dict(), **options)


__all__ = ["FilesystemTotal", "InstallPlan", "PlanStatus", "PlannedModel", "PlannedSource"]


def duration(seconds: float) -> str:
    """A time estimate as people say it: seconds, minutes, then hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
