"""Fetch what a workflow resolver resolved, through the one install pipeline, and say what it is."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from hubloader.core.errors import HubloaderError
from hubloader.core.metadata import ModelMetadata
from hubloader.pipeline import Placed, Progress
from hubloader.sources.civitai import CivitAIService
from hubloader.workflows.report import ModelStatus, ResolutionReport, Status
from hubloader.workflows.resolver import Resolver

log = logging.getLogger(__name__)


def fetch_resolved(
    resolver: Resolver, item: ModelStatus, *, progress: Progress | None = None, cancel: threading.Event | None = None
) -> Placed:
    """Download one RESOLVED item of a :class:`~hubloader.workflows.resolver.Resolver` report (into the folder the
    workflow names, checked against the hashes it gives); its failure is raised, not only recorded."""
    report = ResolutionReport(items=[item])
    resolver.fetch(report, progress=(lambda _item, event: progress(event)) if progress else None, cancel=cancel)
    if item.status is not Status.FETCHED or item.chosen is None or item.path is None:
        raise HubloaderError(item.reason or f"Could not fetch {item.reference.name}.")
    kind = item.reference.kind or item.chosen.kind
    return Placed(Path(item.path), kind, _civitai_source(item), url=item.chosen.url, sha256=item.sha256)


def _civitai_source(item: ModelStatus) -> ModelMetadata | None:
    """What CivitAI says about a file the resolver fetched from it (triggers, weight, hashes for the sidecar)."""
    if item.chosen is None or item.chosen.source != "civitai" or not item.sha256:
        return None
    try:
        return CivitAIService().find_by_hash(item.sha256)
    except HubloaderError as exc:
        log.info("hubloader: no CivitAI description of %s (%s)", item.path, exc)
        return None
