"""Downloading a resolved item: the SHA256 its bytes must have, the transfer (through the site's shared
cache when there is one), and the check of a short hash the workflow gives."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from hubloader.core.errors import IntegrityError
from hubloader.core.metadata import DownloadResult
from hubloader.gate.fetch import Progress, fetch_file
from hubloader.gate.policy import host_to_confirm
from hubloader.gate.request import FileRequest
from hubloader.sharedcache.cache import SharedCache
from hubloader.sources.references import canonical_url
from hubloader.workflows.finding import ModelReference
from hubloader.workflows.report import Candidate, ModelStatus, ResolutionReport, Status


def expected_sha256(ref: ModelReference, candidate: Candidate) -> str:
    """The SHA256 the bytes must have; a workflow and a source that disagree stop the download."""
    source, wanted = candidate.sha256.lower(), ref.sha256.lower()
    if source and wanted and source != wanted:
        raise IntegrityError(
            f"{ref.name}: the workflow says SHA256 {wanted[:12]}…, the source's file is {source[:12]}…; not downloaded.",
            expected=wanted,
            actual=source,
            hint="The source file changed or the workflow points at another version; check it by hand.",
        )
    return wanted or source


def download_candidate(
    candidate: Candidate,
    dest: Path,
    expected_sha256: str,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    shared_cache: SharedCache | str | None = None,
    confirmed_hosts: frozenset[str] = frozenset(),
) -> DownloadResult:
    """The resolved file, through the gate (host, destination, trust, shared cache, engine). ``confirmed_hosts``:
    hosts outside the known ones a local user confirmed (the gate still needs ``expected_sha256`` for them)."""
    service = candidate.source if candidate.source in ("civitai", "huggingface") else "url"
    request = FileRequest(
        url=candidate.url,
        folder=dest.parent,
        name=dest.name,
        sha256=expected_sha256.lower(),
        size=candidate.size_bytes or None,
        token_service=service if service != "url" else None,
        source=service,
        confirmed_hosts=confirmed_hosts,
        record={"source": candidate.source, "url": canonical_url(candidate.url), "air": candidate.air},
    )
    return fetch_file(request, progress=progress, cancel=cancel, shared_cache=shared_cache)


def check_short_hashes(ref: ModelReference, sha256: str, path: Path) -> None:
    """A workflow may give only an AutoV2 (SHA256 prefix) or a short SHA256: check it after the fact."""
    for name, digest in ref.hashes.items():
        if name in ("SHA256", "AutoV2") and len(digest) < 64 and not sha256.lower().startswith(digest):
            path.unlink(missing_ok=True)
            raise IntegrityError(
                f"{ref.name}: the downloaded file's SHA256 {sha256[:12]}… does not start with the workflow's "
                f"{name} {digest}; it was deleted.",
                expected=digest,
                actual=sha256,
            )


@dataclass(frozen=True)
class HostQuestion:
    """A resolved model on a host outside the known ones: what a local user is asked before it is fetched.
    ``sha256`` empty: it cannot be fetched, whatever the answer (the gate needs the published hash)."""

    item: ModelStatus
    host: str
    sha256: str

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.item.reference.name,
            "host": self.host,
            "sha256": self.sha256,
            "confirmable": bool(self.sha256),
        }


def hosts_to_confirm(report: ResolutionReport) -> list[HostQuestion]:
    """The resolved items whose URL is on a host that needs a local user's confirmation, with the SHA256 the
    bytes must have (never asked on load: a face shows these and passes the confirmed hosts to the resolver)."""
    questions = []
    for item in report.by_status(Status.RESOLVED):
        candidate = item.chosen
        host = host_to_confirm(candidate.url) if candidate is not None else None
        if candidate is None or host is None:
            continue
        try:
            sha256 = expected_sha256(item.reference, candidate)
        except IntegrityError:
            sha256 = ""
        questions.append(HostQuestion(item, host, sha256 if len(sha256) == 64 else ""))
    return questions
