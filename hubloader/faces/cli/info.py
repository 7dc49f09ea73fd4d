"""``hubloader info MODEL``: everything known about a model, registered or on its hub."""

from __future__ import annotations

import argparse
from pathlib import Path

from hubloader.core.errors import InvalidReference, NotFound
from hubloader.core.folders import looks_like_path
from hubloader.core.metadata import ModelMetadata
from hubloader.core.settings import redact_url
from hubloader.core.units import human_size
from hubloader.faces.cli.options import Commands, add_command, open_registry
from hubloader.faces.cli.output import EXIT_OK, Output, rating

EXAMPLES = (
    "hubloader info inkwash",
    "hubloader info ~/ComfyUI/models/loras/inkwash.safetensors",
    "hubloader info civitai:123456 --json",
    "hubloader info 8f3a9c2b1d4e",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``info`` to the command line."""
    info = add_command(
        commands,
        "info",
        run,
        "everything known about a model (trigger words and weight with their sources)",
        EXAMPLES,
        common,
    )
    info.add_argument(
        "model", metavar="NAME|ID|HASH", help="a registered name, id, path or hash, or a source reference"
    )


def run(args: argparse.Namespace, out: Output) -> int:
    """A registered model by name, id, path or hash; else what its source says about a reference."""
    registry = open_registry()
    try:
        meta = registry.find_model(args.model)
    finally:
        registry.close()
    if meta is None:
        meta = _remote_info(args.model)
    if out.json:
        out.record(meta.to_dict())
        return EXIT_OK
    for label, value in _info_lines(meta):
        out.line(f"{label + ':':<16} {value}")
    return EXIT_OK


def _remote_info(text: str) -> ModelMetadata:
    """What the model's hub says about a reference that is not registered (a file path is never one)."""
    from hubloader.sources.references import HUGGINGFACE, parse_reference

    if looks_like_path(text):
        raise NotFound(
            f"No model file {str(Path(text).expanduser().absolute())!r} in the registry.",
            hint="Register the folder with `hubloader scan FOLDER`.",
        )
    try:
        ref = parse_reference(text)
    except InvalidReference:
        raise NotFound(
            f"No model {text!r} in the registry.",
            hint="See `hubloader list`, or give a source reference (owner/repo, civitai:ID, a URL or a hash).",
        ) from None
    if ref.kind == HUGGINGFACE:
        from hubloader.sources.huggingface import HuggingFaceHubService

        return HuggingFaceHubService().model_info(str(ref))
    from hubloader.sources.civitai import CivitAIService

    return CivitAIService().lookup(ref)


def _info_lines(meta: ModelMetadata) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the human view."""
    from hubloader.registry import registry_state

    state = registry_state(meta)
    unusable = state.get("status") == "invalid"
    lines = [
        ("Name", meta.name),
        ("Id", meta.model_id),
        ("Source", meta.source.value),
        ("Type", "- (unusable file)" if unusable else meta.type.value),
        (
            "Base model",
            meta.base_model.value + (f" (from {meta.extra['base_source']})" if meta.extra.get("base_source") else ""),
        ),
        ("Version", meta.version or "-"),
        ("Format", meta.format.value),
        ("Size", human_size(meta.size_bytes or None)),
        ("SHA256", meta.sha256 or "-"),
    ]
    other_hashes = {k: v for k, v in meta.hashes.items() if k.upper() != "SHA256" and v}
    if other_hashes:
        lines.append(("Hashes", ", ".join(f"{k} {v}" for k, v in sorted(other_hashes.items()))))
    if meta.air:
        lines.append(("AIR", meta.air))
    words = ", ".join(meta.trigger_words) if meta.trigger_words else "-"
    lines.append(
        ("Trigger words", words + (f" (from {meta.trigger_words_source})" if meta.trigger_words_source else ""))
    )
    weight = f"{meta.recommended_weight:g}" if meta.recommended_weight is not None else "-"
    if meta.extra.get("recommended_weight_range"):
        weight += f" (range {meta.extra['recommended_weight_range']})"
    lines.append(
        ("Weight", weight + (f" (from {meta.recommended_weight_source})" if meta.recommended_weight_source else ""))
    )
    if meta.training_tags:
        lines.append(("Training tags", ", ".join(meta.training_tags)))
    if meta.tags:
        lines.append(("Tags", ", ".join(meta.tags[:15])))
    if meta.author:
        lines.append(("Author", meta.author))
    lines.append(("Downloads", str(meta.download_count)))
    lines.append(("Rating", rating(meta)))
    if state:
        lines.append(("Status", state.get("status", "") + (", pinned" if state.get("pinned") else "")))
    if unusable:
        lines.append(("Unusable", str(meta.extra.get("error") or "the file failed inspection")))
    lines.append(("Local path", str(meta.local_path) if meta.local_path else "-"))
    if meta.remote_url:
        lines.append(("Remote URL", redact_url(meta.remote_url)))
    if meta.extra.get("page_url"):
        lines.append(("Page", str(meta.extra["page_url"])))
    if meta.description:
        text = " ".join(meta.description.split())
        lines.append(("Description", text if len(text) <= 200 else text[:199] + "…"))
    return lines
