"""What the Hub's answers mean: a repository's ``ModelInfo`` (any huggingface_hub version), one file of it, or
a repository in the local cache, as :class:`~hubloader.core.metadata.ModelMetadata`; and which files of a
repository a download wants.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubloader.core import settings as config
from hubloader.core.errors import FileNotFoundOnHub
from hubloader.core.metadata import (
    BaseModel,
    ModelFile,
    ModelFilter,
    ModelFormat,
    ModelMetadata,
    ModelType,
    Source,
)
from hubloader.sources.hf_cache import SHA256_HEX

# diffusers pipeline classes (tag ``diffusers:<Class>``) that name the architecture outright.
PIPELINE_BASES = {
    "stablediffusionpipeline": BaseModel.SD15,
    "stablediffusionxlpipeline": BaseModel.SDXL,
    "stablediffusion3pipeline": BaseModel.SD3,
    "fluxpipeline": BaseModel.FLUX1,
}
# Component folders of a diffusers repo, for a single file taken out of one.
COMPONENT_TYPES = {
    "unet": ModelType.DIFFUSION_MODEL,
    "transformer": ModelType.DIFFUSION_MODEL,
    "vae": ModelType.VAE,
    "text_encoder": ModelType.TEXT_ENCODER,
    "text_encoder_2": ModelType.TEXT_ENCODER,
    "text_encoder_3": ModelType.TEXT_ENCODER,
    "controlnet": ModelType.CONTROLNET,
}


# --- mapping helpers --------------------------------------------------------------------------------


def classify(
    tags: list[str], library: str | None, pipeline_tag: str | None, files: list[str]
) -> tuple[ModelType, ModelFormat]:
    """What kind of repo this is, from its tags, library, pipeline tag and file names."""
    lowered = {t.lower() for t in tags}
    weights = [f for f in files if ModelFormat.from_filename(f) is not ModelFormat.OTHER]
    single_format = ModelFormat.from_filename(primary_name(weights)) if weights else ModelFormat.SAFETENSORS
    if "lora" in lowered or library == "peft" or any(t.startswith("base_model:adapter:") for t in lowered):
        return ModelType.LORA, single_format
    if lowered & {"textual_inversion", "textual-inversion", "embedding", "embeddings"}:
        return ModelType.EMBEDDING, single_format
    diffusers = "model_index.json" in files or library == "diffusers" or "diffusers" in lowered
    if "controlnet" in lowered:
        return ModelType.CONTROLNET, ModelFormat.DIFFUSERS if diffusers else single_format
    if diffusers:
        return ModelType.BASE_MODEL, ModelFormat.DIFFUSERS
    if pipeline_tag in ("text-to-image", "image-to-image") or (weights and library is None):
        return ModelType.BASE_MODEL, single_format
    return ModelType.OTHER, ModelFormat.OTHER


def base_model_of(repo_id: str, tags: list[str], card_bases: list[str]) -> BaseModel:
    """``base_model:`` entries and card data first (what it was made from), then the repo's own tags and id."""
    for tag in tags:
        lowered = tag.lower()
        if lowered.startswith("diffusers:") and lowered[len("diffusers:") :] in PIPELINE_BASES:
            return PIPELINE_BASES[lowered[len("diffusers:") :]]
    declared = [t for t in tags if t.lower().startswith("base_model:")] + [f"base_model:{b}" for b in card_bases]
    for hints in (declared, tags, [repo_id]):
        found = BaseModel.from_hf_tags(hints)
        if found is not BaseModel.UNKNOWN:
            return found
    return BaseModel.UNKNOWN


def model_file(sibling: Any, repo_id: str, commit: str | None) -> ModelFile:
    lfs = sibling.lfs or {}
    return ModelFile(
        name=sibling.rfilename,
        size_bytes=lfs.get("size") or sibling.size or 0,
        url=f"{config.hf_endpoint()}/{repo_id}/resolve/{commit or 'main'}/{sibling.rfilename}",
        sha256=lfs.get("sha256") or "",
        format=ModelFormat.from_filename(sibling.rfilename),
    )


def primary_name(names: list[str]) -> str:
    """The file a single-file repo is about: a root .safetensors before anything else."""
    return sorted(names, key=lambda n: ("/" in n, ModelFormat.from_filename(n) is not ModelFormat.SAFETENSORS, n))[0]


def primary_weight(files: list[ModelFile]) -> ModelFile | None:
    weights = [f for f in files if f.format is not ModelFormat.OTHER]
    if not weights:
        return None
    name = primary_name([f.name for f in weights])
    return next(f for f in weights if f.name == name)


def file_type(repo: ModelMetadata, path: str) -> ModelType:
    """The type of one file of a repo: its diffusers component folder's (``vae/`` …), else the repo's (the root
    weights of a diffusers repo are a base model)."""
    component = COMPONENT_TYPES.get(path.split("/")[0]) if "/" in path else None
    return component or (repo.type if repo.format is not ModelFormat.DIFFUSERS else ModelType.BASE_MODEL)


def narrow_to_file(meta: ModelMetadata, path: str) -> ModelMetadata:
    """A repo's metadata, turned into the metadata of one of its files."""
    match = next((f for f in meta.files if f.name == path), None)
    if match is None:
        raise FileNotFoundOnHub(f"{path} does not exist in {meta.model_id} at {meta.version or 'main'}.")
    return dataclasses.replace(
        meta,
        model_id=f"{meta.model_id}/{path}",
        name=posixpath.basename(path),
        type=file_type(meta, path),
        format=match.format,
        size_bytes=match.size_bytes,
        sha256=match.sha256,
        files=[match],
        remote_url=match.url,
    )


def matches_filter(meta: ModelMetadata, wanted: ModelFilter) -> bool:
    if wanted.base_model is not None and not meta.base_model.compatible_with(wanted.base_model):
        return False
    loras = (ModelType.LORA, ModelType.LYCORIS)  # the Hub does not tell LoCon from LoRA
    if (
        wanted.model_type is not None
        and meta.type is not wanted.model_type
        and not {meta.type, wanted.model_type} <= set(loras)
    ):
        return False
    return True


def metadata_from_info(info: Any) -> ModelMetadata:
    """Map a huggingface_hub ``ModelInfo`` (any version) to our :class:`ModelMetadata`."""
    repo_id: str = info.id
    tags = list(info.tags or [])
    card = info.card_data
    card_bases = card.get("base_model") if card is not None else None
    card_bases = [card_bases] if isinstance(card_bases, str) else list(card_bases or [])
    files = [model_file(s, repo_id, info.sha) for s in info.siblings or []]
    model_type, model_format = classify(tags, info.library_name, info.pipeline_tag, [f.name for f in files])
    created = info.created_at or info.last_modified or datetime.now(timezone.utc)
    primary = primary_weight(files) if model_format is not ModelFormat.DIFFUSERS else None
    return ModelMetadata(
        model_id=repo_id,
        name=repo_id.split("/")[-1],
        source=Source.HUGGINGFACE,
        type=model_type,
        base_model=base_model_of(repo_id, tags, card_bases),
        version=info.sha or "",
        format=model_format,
        size_bytes=sum(f.size_bytes for f in files),
        sha256=primary.sha256 if primary else "",
        tags=tags,
        download_count=info.downloads or 0,
        like_count=info.likes or 0,
        remote_url=f"{config.hf_endpoint()}/{repo_id}",
        created_at=created,
        updated_at=info.last_modified or created,
        version_id=info.sha or "",
        files=files,
        author=info.author or repo_id.split("/")[0],
        extra={
            "pipeline_tag": info.pipeline_tag,
            "library_name": info.library_name,
            "gated": info.gated,
            "private": info.private,
            "base_models": card_bases,
        },
    )


# --- file selection and completeness ----------------------------------------------------------------


def select_files(
    paths: list[str], *, allow: list[str] | None, ignore: list[str] | None, prefer_safetensors: bool
) -> list[str]:
    """The repo files a download wants: the patterns (as snapshot_download applies them), minus
    pickle weights sitting next to safetensors ones unless an allow pattern names their extension."""
    from huggingface_hub.utils import filter_repo_objects

    selected = list(filter_repo_objects(paths, allow_patterns=allow, ignore_patterns=ignore))
    if not prefer_safetensors:
        return selected
    safe_folders = {posixpath.dirname(p) for p in selected if ModelFormat.from_filename(p) is ModelFormat.SAFETENSORS}
    asked = {Path(p).suffix.lower() for p in allow or []}

    def redundant(path: str) -> bool:
        return (
            ModelFormat.from_filename(path).is_pickle
            and posixpath.dirname(path) in safe_folders
            and Path(path).suffix.lower() not in asked
        )

    return [p for p in selected if not redundant(p)]


# --- cached entries and deletion --------------------------------------------------------------------


def cached_entries(repo: Any) -> list[ModelMetadata]:
    """Entries for one cached repo, from its newest revision."""
    revision = max(repo.revisions, key=lambda r: r.last_modified)
    names = {str(f.file_path.relative_to(revision.snapshot_path)).replace(os.sep, "/"): f for f in revision.files}
    modified = datetime.fromtimestamp(revision.last_modified, timezone.utc)
    base = ModelMetadata(
        model_id=repo.repo_id,
        name=repo.repo_id.split("/")[-1],
        source=Source.HUGGINGFACE,
        base_model=base_model_of(repo.repo_id, [], []),
        version=revision.commit_hash,
        version_id=revision.commit_hash,
        size_bytes=revision.size_on_disk,
        local_path=revision.snapshot_path,
        remote_url=f"{config.hf_endpoint()}/{repo.repo_id}",
        author=repo.repo_id.split("/")[0],
        created_at=modified,
        updated_at=modified,
        extra={"refs": sorted(revision.refs)},
    )
    files = [
        ModelFile(
            name=name,
            size_bytes=f.size_on_disk,
            sha256=f.blob_path.name if SHA256_HEX.fullmatch(f.blob_path.name) else "",
            format=ModelFormat.from_filename(name),
        )
        for name, f in sorted(names.items())
    ]
    weights = [f for f in files if f.format is not ModelFormat.OTHER]
    if "model_index.json" in names or not weights:
        kind, fmt = classify([], None, None, list(names))
        return [dataclasses.replace(base, type=kind, format=fmt, files=files)]
    return [
        dataclasses.replace(
            base,
            model_id=f"{repo.repo_id}/{f.name}",
            name=posixpath.basename(f.name),
            type=COMPONENT_TYPES.get(f.name.split("/")[0], ModelType.OTHER) if "/" in f.name else ModelType.OTHER,
            format=f.format,
            size_bytes=f.size_bytes,
            sha256=f.sha256,
            files=[f],
            local_path=Path(names[f.name].file_path),
        )
        for f in weights
    ]
