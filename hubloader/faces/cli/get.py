"""``hubloader get REF``: download a model into the right folder, verified, described and registered."""

from __future__ import annotations

import argparse
from pathlib import Path

from hubloader.core.units import human_size
from hubloader.faces.cli.options import (
    Commands,
    add_command,
    add_host_options,
    add_shared_cache_option,
    host_folders,
    model_type,
    open_registry,
)
from hubloader.faces.cli.output import EXIT_OK, Output, model_fields, short_hash

EXAMPLES = (
    "hubloader get stabilityai/sdxl-vae/sdxl_vae.safetensors",
    "hubloader get civitai:123456@654321 --comfyui ~/ComfyUI",
    "hubloader get https://civitai.com/models/123456 --a1111 ~/stable-diffusion-webui",
    "hubloader get urn:air:sdxl:lora:civitai:123456@654321 --to ./loras --json",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``get`` to the command line."""
    get = add_command(
        commands, "get", run, "download a model into the right folder, verified and registered", EXAMPLES, common
    )
    get.add_argument(
        "ref",
        metavar="REF",
        help="owner/repo[/file], a HuggingFace or CivitAI URL, civitai:MODEL[@VERSION], an AIR, or a hash",
    )
    get.add_argument("--revision", metavar="R", help="HuggingFace branch/tag/commit, or a CivitAI version id")
    get.add_argument("--type", type=model_type, help="override the model type (decides the folder)")
    get.add_argument("--allow-pickle", action="store_true", help="allow .ckpt/.pt/.bin files (they can run code)")
    add_host_options(get, with_to=True)
    add_shared_cache_option(get)


def run(args: argparse.Namespace, out: Output) -> int:
    """Download what REF names into the host's folder, verified; describe it, write sidecars, register it."""
    from hubloader.pipeline import fetch, record

    placed = fetch(
        args.ref,
        Path(args.to).expanduser() if args.to else host_folders(args),
        kind=args.type,
        revision=args.revision,
        allow_pickle=True if args.allow_pickle else None,  # else the allow_pickle setting
        progress=out.progress(args.ref),
        shared_cache=args.shared_cache,
    )
    with open_registry() as registry:
        meta = record(placed, registry, model_type=args.type)
    path, reused = placed.path, placed.reused
    if out.json:
        out.record(
            {
                "path": str(path),
                **model_fields(meta),
                "reused": reused,
                "verified": bool(meta.sha256),
                "trigger_words": meta.trigger_words,
                "recommended_weight": meta.recommended_weight,
            }
        )
        return EXIT_OK
    verb = "Already present" if reused else "Saved"
    if path.is_dir():
        out.line(f"{verb}: {path} (a diffusers folder in the HuggingFace cache)")
    else:
        out.line(f"{verb}: {path} ({human_size(meta.size_bytes or None)}, SHA256 {short_hash(meta.sha256)} verified)")
    if meta.trigger_words:
        out.line(f"  trigger words: {', '.join(meta.trigger_words)}")
    return EXIT_OK
