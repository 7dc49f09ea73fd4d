"""``hubloader plan FILE``: what fetching a workflow's models will take, before a byte moves."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hubloader.core.settings import redact_url
from hubloader.core.units import human_size
from hubloader.faces.cli.options import (
    Commands,
    add_command,
    add_host_options,
    add_shared_cache_option,
    existing_file,
    host_folders,
)
from hubloader.faces.cli.output import EXIT_ERROR, EXIT_OK, Output

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.workflows.plan import InstallPlan, PlannedModel

EXAMPLES = (
    "hubloader plan workflow.json",
    "hubloader plan image.png --comfyui ~/ComfyUI",
    "hubloader plan workflow.lock.json --json",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``plan`` to the command line."""
    plan = add_command(
        commands,
        "plan",
        run,
        "show what fetching FILE's models needs (sizes, tokens, licences, disk space) without fetching",
        EXAMPLES,
        common,
    )
    plan.add_argument("file", metavar="FILE", help="workflow .json, PNG/WebP image, infotext .txt or .lock.json")
    add_host_options(plan)
    add_shared_cache_option(plan)


def run(args: argparse.Namespace, out: Output) -> int:
    """Print the install plan; exit 1 when some missing model cannot be fetched now (the plan says why)."""
    from hubloader.workflows import Resolver
    from hubloader.workflows.plan import Planner

    path = existing_file(args.file)
    plan = Planner(Resolver(host_folders(args), shared_cache=args.shared_cache)).plan(str(path))
    print_plan(plan, out)
    return EXIT_OK if plan.to_dict()["can_fetch_all"] else EXIT_ERROR


def _detail(model: PlannedModel) -> str:
    """One cell: where a present model is, or the source, destination and needs of a missing one."""
    if model.status.value == "present":
        return model.path
    if model.status.value == "present_elsewhere":
        return f"{model.reuse} {model.use_as or model.path}" + (f" -> {model.destination}" if model.destination else "")
    if model.source is not None:
        text = f"{model.source.service} {redact_url(model.source.url)} -> {model.destination}"
        return text + (f" [{model.why_not}]" if model.why_not else "")
    if model.candidates:
        return "; ".join(f"{c.evidence}" for c in model.candidates)
    return model.why_not or model.reason


def print_plan(plan: InstallPlan, out: Output) -> None:
    """A row per model, what stands in the way, then the totals (or the plan as JSON)."""
    if out.json:
        out.record(plan.to_dict())
        return
    if not plan.models:
        out.line("The file names no models.")
        return
    rows = [
        (m.status.value, m.kind or "?", m.name, human_size(m.size or None), "yes" if m.can_fetch else "-", _detail(m))
        for m in plan.models
    ]
    out.table(("STATUS", "KIND", "MODEL", "SIZE", "FETCH", "DETAIL"), rows, widths={2: 40, 5: 110})
    for line in plan.summary_lines():
        out.line(line)
