"""``hubloader search QUERY``: models on HuggingFace and/or CivitAI, as a table or JSON lines."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hubloader.core.errors import NetworkError
from hubloader.core.metadata import ModelMetadata, SortBy, Source
from hubloader.core.settings import redact_url
from hubloader.core.units import human_size
from hubloader.faces.cli.options import Commands, add_command, base_model, model_type, open_registry
from hubloader.faces.cli.output import EXIT_OK, Output, rating

SEARCH_SOURCES = {
    "hf": (Source.HUGGINGFACE,),
    "civitai": (Source.CIVITAI,),
    "all": (Source.HUGGINGFACE, Source.CIVITAI),
}

EXAMPLES = (
    "hubloader search inkwash",
    "hubloader search anime --source civitai --type lora --base sdxl --sort popular",
    "hubloader search flux --source hf --limit 5 --json",
    "hubloader search inkwash --source civitai -q | head -1 | xargs hubloader get",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``search`` to the command line."""
    search = add_command(commands, "search", run, "search HuggingFace and/or CivitAI", EXAMPLES, common)
    search.add_argument("query", metavar="QUERY", nargs="?", default="", help="words to search for (default: all)")
    search.add_argument("--source", choices=sorted(SEARCH_SOURCES), default="all", help="which hub(s) to ask (all)")
    search.add_argument("--type", type=model_type, help="lora, checkpoint, vae, embedding, controlnet …")
    search.add_argument("--base", type=base_model, help="sd15, sdxl, pony, illustrious, flux …")
    search.add_argument(
        "--sort", choices=["popular", "rating", "newest", "likes"], default=None, help="order (default: the hub's)"
    )
    search.add_argument("--limit", type=int, default=20, metavar="N", help="at most N results (20)")


def run(args: argparse.Namespace, out: Output) -> int:
    """Search the hubs; a failing source is a warning while another one answers."""
    sources = SEARCH_SOURCES[args.source]
    sort = SortBy.parse(args.sort) if args.sort else None
    registry_log = logging.getLogger("hubloader.registry")
    level = registry_log.level
    if not out.verbose:  # it logs each failing hub; we say it below, once
        registry_log.setLevel(logging.ERROR)
    try:
        with open_registry() as registry:
            results = registry.search(
                args.query, sources, args.type, args.base, limit=args.limit, remote_only=True, sort=sort
            )
    finally:
        registry_log.setLevel(level)
    if len(results.failures) == len(sources):
        raise _none_answered(list(results.failures.values()))
    for warning in results.warnings:
        out.warn(warning)
    if out.json:
        for meta in results:
            out.record(search_record(meta))
        return EXIT_OK
    if out.quiet:  # ids alone, one a line: `for id in $(hubloader search ink -q); do hubloader get "$id"; done`
        for meta in results:
            out.result(meta.model_id)
        return EXIT_OK
    if not results:
        out.line("No models found.")
        return EXIT_OK
    rows = [
        (
            m.name,
            "hf" if m.source is Source.HUGGINGFACE else str(m.source),
            m.model_id,
            m.type.value,
            m.base_model.value,
            human_size(m.size_bytes or None),
            m.download_count or "-",
            rating(m),
        )
        for m in results
    ]
    out.table(("NAME", "SOURCE", "ID", "TYPE", "BASE", "SIZE", "DOWNLOADS", "RATING"), rows, widths={0: 40, 2: 48})
    return EXIT_OK


def _none_answered(errors: list[Exception]) -> Exception:
    """No hub answered: their reasons in one error (one line), or the one hub's own error."""
    if len(errors) == 1:
        return errors[0]
    if all(isinstance(e, NetworkError) for e in errors):
        reasons = "; ".join(getattr(e, "message", str(e)).rstrip(".") for e in errors)
        return NetworkError(
            f"No hub answered the search: {reasons}.",
            hint="Check the connection (and HF_ENDPOINT/CIVITAI_ENDPOINT, if set), then try again.",
        )
    return next((e for e in errors if not isinstance(e, NetworkError)), errors[0])


def search_record(meta: ModelMetadata) -> dict[str, Any]:
    """One search result as a JSON line."""
    return {
        "name": meta.name,
        "source": meta.source.value,
        "id": meta.model_id,
        "type": meta.type.value,
        "base": meta.base_model.value,
        "size_bytes": meta.size_bytes,
        "downloads": meta.download_count,
        "rating": meta.rating,
        "likes": meta.like_count,
        "air": meta.air,
        "url": redact_url(meta.remote_url) if meta.remote_url else "",
    }
