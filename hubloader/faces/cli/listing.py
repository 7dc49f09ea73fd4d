"""``hubloader list``: the models in the registry, as a table or JSON lines."""

from __future__ import annotations

import argparse
from typing import Any

from hubloader.core.metadata import ModelMetadata
from hubloader.core.units import human_size
from hubloader.faces.cli.options import Commands, add_command, model_type, open_registry, source
from hubloader.faces.cli.output import EXIT_OK, Output, model_fields

EXAMPLES = (
    "hubloader list",
    "hubloader list --source civitai --type lora",
    "hubloader list --missing --json",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``list`` to the command line."""
    listing = add_command(commands, "list", run, "list the models in the registry", EXAMPLES, common)
    listing.add_argument("--source", type=source, help="only models from hf, civitai, local or url")
    listing.add_argument("--type", type=model_type, help="only models of this type (lora, checkpoint, vae …)")
    listing.add_argument("--missing", action="store_true", help="only registered models whose file is gone")


def run(args: argparse.Namespace, out: Output) -> int:
    """The registered models, optionally only those of a source or type, or whose file is gone."""
    from hubloader.registry import registry_state

    registry = open_registry()
    try:
        models = registry.list_models(source=args.source, model_type=args.type)
    finally:
        registry.close()
    if args.missing:
        models = [m for m in models if registry_state(m).get("status") == "missing"]
    if out.json:
        for meta in models:
            out.record(library_record(meta))
        return EXIT_OK
    if out.quiet:  # the ids alone, one a line (for scripts: `hubloader list -q | xargs -n1 hubloader info`)
        for meta in models:
            out.result(meta.model_id)
        return EXIT_OK
    if not models:
        out.line("No models registered." if not args.missing else "No missing models.")
        return EXIT_OK
    rows = [
        (
            m.name,
            m.model_id,
            "-" if _unusable(m) else m.type.value,
            m.base_model.value,
            human_size(m.size_bytes or None),
            ", ".join(m.trigger_words) or "-",
            f"{m.recommended_weight:g}" if m.recommended_weight is not None else "-",
            "invalid (unusable)" if _unusable(m) else registry_state(m).get("status", ""),
            str(m.local_path or "-"),
        )
        for m in models
    ]
    out.table(
        ("NAME", "ID", "TYPE", "BASE", "SIZE", "TRIGGER WORDS", "WEIGHT", "STATUS", "PATH"),
        rows,
        widths={0: 32, 1: 40, 5: 32},
    )
    return EXIT_OK


def library_record(meta: ModelMetadata) -> dict[str, Any]:
    """One registered model as a JSON line."""
    from hubloader.registry import registry_state

    state = registry_state(meta)
    return {
        **model_fields(meta),
        "status": state.get("status", ""),
        "pinned": bool(state.get("pinned")),
        "path": str(meta.local_path) if meta.local_path else None,
        "trigger_words": meta.trigger_words,
        "recommended_weight": meta.recommended_weight,
        "error": meta.extra.get("error") if _unusable(meta) else None,
    }


def _unusable(meta: ModelMetadata) -> bool:
    """Whether the model's file failed inspection (recorded ``invalid``)."""
    from hubloader.registry import registry_state

    return registry_state(meta).get("status") == "invalid"
