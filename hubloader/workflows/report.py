"""What resolving found: each model's :class:`Status`, the :class:`Candidate` sources of a missing one, and
the :class:`ResolutionReport` of a whole workflow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubloader.core.settings import redact_url
from hubloader.workflows.finding import ModelReference

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.engine.download import DownloadProgress


class Status(str, Enum):
    FOUND = "found"  # at the exact path the workflow names
    FOUND_ELSEWHERE = "found_elsewhere"  # same file name in another subfolder of its kind: use `use_as`
    FOUND_BY_HASH = "found_by_hash"  # a file with the same hash is known to the registry
    RESOLVED = "resolved"  # missing, and a source to fetch it from was found
    FETCHED = "fetched"  # downloaded and verified
    UNRESOLVED = "unresolved"  # missing, no trustworthy source: see `reason`
    FAILED = "failed"  # a source was found but fetching it failed: see `reason`

    def __str__(self) -> str:
        return self.value


LOCAL_STATUSES = frozenset({Status.FOUND, Status.FOUND_ELSEWHERE, Status.FOUND_BY_HASH})


@dataclass
class Candidate:
    """A place the missing file can be fetched from, with how sure we are and why."""

    url: str
    file_name: str
    source: str  # "huggingface" | "civitai" | "url"
    confidence: float  # 0–1
    evidence: str
    size_bytes: int = 0
    sha256: str = ""
    air: str = ""
    kind: str = ""  # the kind the source states (used when the workflow does not say)
    model: str = ""  # the model as its source names it, for messages: "Fake SDXL (civitai:1004@2006)"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["url"] = redact_url(self.url)
        return data


@dataclass
class ModelStatus:
    reference: ModelReference
    status: Status
    path: Path | None = None  # local file, when found or fetched
    use_as: str = ""  # the value a loader widget should hold (relative to the kind's folder)
    candidates: list[Candidate] = field(default_factory=list)  # best first
    reason: str = ""
    sha256: str = ""
    size_bytes: int = 0

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def is_local(self) -> bool:
        return self.status in LOCAL_STATUSES or self.status is Status.FETCHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference.to_dict(),
            "status": self.status.value,
            "path": str(self.path) if self.path else None,
            "use_as": self.use_as,
            "candidates": [c.to_dict() for c in self.candidates],
            "reason": self.reason,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
        }


@dataclass
class ResolutionReport:
    items: list[ModelStatus] = field(default_factory=list)
    source: str = ""  # the file the workflow came from, if any

    def by_status(self, *statuses: Status) -> list[ModelStatus]:
        return [item for item in self.items if item.status in statuses]

    @property
    def missing(self) -> list[ModelStatus]:
        return [item for item in self.items if not item.is_local]

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for item in self.items:
            counts[item.status.value] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "counts": self.counts(), "items": [item.to_dict() for item in self.items]}


#: Told of each item's transfer events while it is fetched.
ProgressCallback = Callable[[ModelStatus, "DownloadProgress"], None]
