"""``hubloader verify LOCKFILE|WORKFLOW``: every pinned model on disk against its SHA256."""

from __future__ import annotations

import argparse

from hubloader.faces.cli.options import Commands, add_command, add_host_options, existing_file, host_folders
from hubloader.faces.cli.output import EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_OK, Output, short_hash

EXAMPLES = (
    "hubloader verify workflow.lock.json",
    "hubloader verify workflow.json --comfyui ~/ComfyUI",
    "hubloader verify image.png --json",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``verify`` to the command line."""
    verify = add_command(
        commands,
        "verify",
        run,
        "check the models of a lockfile or workflow on disk against their SHA256: missing, changed, extra",
        EXAMPLES,
        common,
    )
    verify.add_argument("file", metavar="FILE", help="a .lock.json, or a workflow/image (its lockfile beside it)")
    add_host_options(verify)


def run(args: argparse.Namespace, out: Output) -> int:
    """Exit 5 when a file changed, 3 when one is missing or unpinned-but-used (extra), else 0."""
    from hubloader.workflows.verify import CHANGED, verify

    report = verify(str(existing_file(args.file)), host_folders(args))
    if out.json:
        out.record(report.to_dict())
    else:
        if not report.pins_from:
            out.line("Nothing to verify: no lockfile beside it and the workflow gives no SHA256.")
        rows = [
            (m.status, m.kind or "?", m.name, short_hash(m.actual) if m.actual else "-", short_hash(m.expected) or "-")
            for m in report.models
        ]
        if rows:
            out.table(("STATUS", "KIND", "MODEL", "ON DISK", "PINNED"), rows, widths={2: 60})
        counts = {k: v for k, v in report.to_dict()["counts"].items() if v}
        out.line(f"{len(report.models)} model(s): " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for problem in report.problems:
        out.error(problem.message())
    if any(m.status == CHANGED for m in report.problems):
        return EXIT_INTEGRITY
    return EXIT_NOT_FOUND if report.problems else EXIT_OK
