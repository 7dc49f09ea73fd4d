"""Workflows, images and lockfiles: which models they need, and resolving those to files.

reading (a workflow, image or infotext) → finding (the models it names) → report (statuses, candidates) →
local (matching files) → candidates, services, download → resolver → lockfile, fetching.
"""

from hubloader.workflows.finding import ModelReference, NodeUse, find_references
from hubloader.workflows.reading import Workflow, read_workflow
from hubloader.workflows.report import Candidate, ModelStatus, ResolutionReport, Status
from hubloader.workflows.resolver import Resolver, resolve_workflow

__all__ = [
    "Candidate",
    "ModelReference",
    "ModelStatus",
    "NodeUse",
    "ResolutionReport",
    "Resolver",
    "Status",
    "Workflow",
    "find_references",
    "read_workflow",
    "resolve_workflow",
]
