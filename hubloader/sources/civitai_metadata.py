"""CivitAI's JSON as :class:`~hubloader.core.metadata.ModelMetadata`: pure functions, no request.

A model document and one of its versions (a list item, a model or a version document) become the metadata of
that version: its AIR (CivitAI's own when the answer has one, else built as CivitAI builds it), its files and
hashes, the primary file, trigger words, the recommended weight and where it was read, the description as text.
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any

from hubloader.core.errors import NotFound
from hubloader.core.metadata import BaseModel, ModelFile, ModelFormat, ModelMetadata, ModelType, Source
from hubloader.core.triggers import triggers_from_civitai, weights_from_civitai
from hubloader.sources.references import CIVITAI, civitai_id, format_air

#: Types whose recommended weight (LoRA strength) means something.
WEIGHTED_TYPES = frozenset({ModelType.LORA, ModelType.LYCORIS, ModelType.HYPERNETWORK})

# CivitAI model type → AIR type (CivitAI's own ``typeUrnMap``), for versions whose answer has no ``air``.
_AIR_TYPES = {
    "Checkpoint": "checkpoint",
    "LORA": "lora",
    "LoCon": "lycoris",
    "DoRA": "dora",
    "TextualInversion": "embedding",
    "Hypernetwork": "hypernet",
    "AestheticGradient": "ag",
    "Controlnet": "controlnet",
    "Upscaler": "upscaler",
    "MotionModule": "motion",
    "VAE": "vae",
    "TextEncoder": "text_encoders",
    "UNet": "unet",
    "CLIPVision": "clipvision",
    "CLIP": "clip",
    "VisionLanguage": "visionlanguage",
}
# Our BaseModel → AIR ecosystem (the root ecosystem: Pony/Illustrious/NoobAI are sdxl).
_AIR_ECOSYSTEMS = {
    BaseModel.SD15: "sd1",
    BaseModel.SD2: "sd2",
    BaseModel.SDXL: "sdxl",
    BaseModel.PONY: "sdxl",
    BaseModel.ILLUSTRIOUS: "sdxl",
    BaseModel.NOOBAI: "sdxl",
    BaseModel.SD3: "sd3",
    BaseModel.SD35: "sd3",
    BaseModel.FLUX1: "flux1",
    BaseModel.FLUX2: "flux2",
}
_FORMATS = {
    "safetensor": ModelFormat.SAFETENSORS,
    "gguf": ModelFormat.GGUF,
    "diffusers": ModelFormat.DIFFUSERS,
    "onnx": ModelFormat.ONNX,
}
# Files that are the model itself (not training data, configs, archives, negatives …).
_MODEL_FILE_TYPES = frozenset({"model", "pruned model", "diffusion model", "unet"})
_PRECISION_RANK = {"fp16": 0, "bf16": 1, "fp32": 2}


# --- pure mapping: CivitAI JSON → ModelMetadata ----------------------------------------------------


def metadata_from_civitai(
    model: dict[str, Any],
    version: dict[str, Any],
    *,
    file: dict[str, Any] | None = None,
    site_url: str = "https://civitai.com",
) -> ModelMetadata:
    """Map a model document and one of its versions (list item, model or version document) to metadata.

    ``file`` is the file the caller cares about (a by-hash match); by default the primary model file.
    Hashes are lower-case hex. ``extra`` keeps what our dataclass has no field for: the raw HTML
    descriptions, the exact CivitAI type and base-model names, stats, the page URL and the raw files.
    """
    model_id, version_id = model.get("id") or version.get("modelId"), version.get("id")
    civitai_type = str(model.get("type") or "")
    model_type = ModelType.from_civitai(civitai_type)
    base_name = str(version.get("baseModel") or "")
    base = BaseModel.from_civitai(base_name)
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    primary = file or pick_file(files, model_type) or {}
    described = describe_file(primary) if primary else ModelFile(name="")
    model_html = str(model.get("description") or "")
    version_html = str(version.get("description") or "")
    stats = {**(model.get("stats") or {}), **(version.get("stats") or {})}
    creator = model.get("creator") or {}
    weight, weight_source, weight_range = _recommended_weight(model_type, version, model_html, version_html)
    triggers = triggers_from_civitai(version)
    air = version.get("air") or (
        format_air(
            _AIR_ECOSYSTEMS.get(base, "other"), _AIR_TYPES.get(civitai_type, "unknown"), CIVITAI, model_id, version_id
        )
        if model_id and version_id
        else ""
    )
    extra: dict[str, Any] = {
        "civitai_model_id": model_id,
        "civitai_version_id": version_id,
        "civitai_type": civitai_type,
        "civitai_base_model": base_name,
        "page_url": f"{site_url}/models/{model_id}?modelVersionId={version_id}",
        "description_html": model_html,
        "version_description": html_to_text(version_html),
        "version_description_html": version_html,
        "stats": stats,
        "civitai_files": files,
        "availability": version.get("availability") or model.get("availability") or "",
    }
    for key in ("earlyAccessEndsAt", "earlyAccessDeadline", "usageControl", "status", "mode", "baseModelType"):
        if version.get(key) or model.get(key):
            extra[key] = version.get(key) or model.get(key)
    if weight_range:
        extra["recommended_weight_range"] = weight_range
    if isinstance(version.get("settings"), dict):
        extra["settings"] = version["settings"]
    return ModelMetadata(
        model_id=civitai_id(model_id, version_id),
        name=str(model.get("name") or version.get("name") or f"civitai {model_id}"),
        source=Source.CIVITAI,
        type=model_type,
        base_model=base,
        version=str(version.get("name") or ""),
        format=described.format if primary else ModelFormat.OTHER,
        size_bytes=described.size_bytes,
        sha256=described.sha256,
        trigger_words=list(triggers.value) if triggers else [],
        tags=[str(t) for t in model.get("tags") or []],
        description=html_to_text(model_html),
        download_count=int(stats.get("downloadCount") or 0),
        rating=thumbs_rating(stats),
        recommended_weight=weight,
        remote_url=str(primary.get("downloadUrl") or version.get("downloadUrl") or ""),
        created_at=_parse_time(version.get("createdAt") or version.get("publishedAt")),
        updated_at=_parse_time(version.get("updatedAt") or version.get("publishedAt") or version.get("createdAt")),
        version_id=str(version_id or ""),
        hashes=described.hashes,
        files=[describe_file(f) for f in files],
        preview_urls=[
            str(i["url"]) for i in version.get("images") or [] if i.get("url") and i.get("type", "image") == "image"
        ],
        air=str(air),
        author=str(creator.get("username") or ""),
        like_count=int(stats.get("thumbsUpCount") or 0),
        nsfw=bool(model.get("nsfw")),
        trigger_words_source=triggers.source if triggers else "",
        recommended_weight_source=weight_source,
        extra=extra,
    )


def thumbs_rating(stats: dict[str, Any]) -> float:
    """A 0–5 rating: 5 × thumbs-up share when both thumb counts are known, else CivitAI's legacy star rating.

    CivitAI replaced star ratings with thumbs; a model with 52 554 up and 17 down rates 5 × 0.9997 = 5.0.
    A version document lists only thumbs-up: a share cannot be computed from it, so it falls back.
    """
    up, down = stats.get("thumbsUpCount"), stats.get("thumbsDownCount")
    if isinstance(up, (int, float)) and isinstance(down, (int, float)) and up + down > 0:
        return round(5.0 * up / (up + down), 2)
    return round(float(stats.get("rating") or 0.0), 2)


def pick_file(
    files: list[dict[str, Any]],
    model_type: ModelType,
    *,
    file_id: int | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The file to download: ``file_id`` if given, else the best model file matching ``params``.

    Best = SafeTensor over GGUF over others over pickle; for checkpoints pruned over full and fp16 over
    bf16 over fp32; then the creator's primary file. Training data, configs and archives never win.
    """
    if file_id is not None:
        return next((f for f in files if f.get("id") == file_id), None)
    candidates = [f for f in files if _file_matches(f, params or {})]
    models = [f for f in candidates if str(f.get("type") or "model").lower() in _MODEL_FILE_TYPES]
    if model_type is ModelType.VAE:
        models += [f for f in candidates if str(f.get("type") or "").lower() == "vae"]
    if not models:
        return None

    def rank(f: dict[str, Any]) -> tuple[int, ...]:
        meta = f.get("metadata") or {}
        fmt = str(meta.get("format") or "").lower()
        format_rank = 0 if fmt == "safetensor" else 1 if fmt == "gguf" else 3 if fmt == "pickletensor" else 2
        if format_rank == 2 and str(f.get("name") or "").lower().endswith(".safetensors"):
            format_rank = 0
        checkpoint = model_type is ModelType.BASE_MODEL
        pruned = 0 if not checkpoint or meta.get("size") == "pruned" else 1
        precision = _PRECISION_RANK.get(str(meta.get("fp") or ""), 3) if checkpoint else 0
        return (format_rank, pruned, precision, 0 if f.get("primary") else 1)

    return min(models, key=rank)


def _file_matches(file: dict[str, Any], params: dict[str, str]) -> bool:
    meta = file.get("metadata") or {}
    actual = {"type": file.get("type"), **{k: meta.get(k) for k in ("format", "size", "fp", "quantType")}}
    return all(str(actual.get(k) or "").lower() == str(v).lower() for k, v in params.items())


def describe_file(file: dict[str, Any]) -> ModelFile:
    hashes = {str(k): str(v).lower() for k, v in (file.get("hashes") or {}).items() if v}
    meta = file.get("metadata") or {}
    name = str(file.get("name") or "")
    fmt = _FORMATS.get(str(meta.get("format") or "").lower()) or ModelFormat.from_filename(name)
    return ModelFile(
        name=name,
        size_bytes=round(float(file.get("sizeKB") or 0) * 1024),
        url=str(file.get("downloadUrl") or ""),
        sha256=hashes.get("SHA256", ""),
        hashes=hashes,
        format=fmt,
        primary=bool(file.get("primary")),
        kind=str(file.get("type") or ""),
        precision=str(meta.get("fp") or ""),
    )


def search_hit(
    model: dict[str, Any], wanted_type: ModelType | None, wanted_base: BaseModel | None, site_url: str
) -> ModelMetadata | None:
    if wanted_type and ModelType.from_civitai(model.get("type")) is not wanted_type:
        return None
    versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
    if wanted_base:
        versions = [v for v in versions if BaseModel.from_civitai(v.get("baseModel")) is wanted_base]
    if not versions:
        return None
    return metadata_from_civitai(model, versions[0], site_url=site_url)


def files_with_hashes(
    versions: list[dict[str, Any]], wanted: set[str]
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """``{hash: (version, file)}`` for each wanted hash some file of these version documents carries."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for version in versions:
        for file in version.get("files") or []:
            for value in (file.get("hashes") or {}).values():
                if str(value).lower() in wanted:
                    found.setdefault(str(value).lower(), (version, file))
    return found


def pick_version(model: dict[str, Any], version_id: int | None) -> dict[str, Any]:
    versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
    if version_id is None:
        if versions:
            return versions[0]  # index 0 is the newest
        raise NotFound(f"CivitAI model {model.get('id')} has no published version.")
    for version in versions:
        if version.get("id") == version_id:
            return version
    raise NotFound(
        f"CivitAI model {model.get('id')} ({model.get('name')!r}) has no version {version_id}.",
        hint=f"Its versions: {', '.join(str(v.get('id')) for v in versions) or 'none'}.",
    )


def merge_versions(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """A version entry from a model document completed by the version document (stats merged, not replaced)."""
    merged = {**base, **more}
    merged["stats"] = {**(base.get("stats") or {}), **(more.get("stats") or {})}
    return merged


def model_for(version: dict[str, Any], models: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The model document of a version, or the little the version document says about its model."""
    model_id = version.get("modelId")
    if model_id in models:
        return models[model_id]
    return {"id": model_id, **(version.get("model") or {})}


def file_with_hash(version: dict[str, Any], file_hash: str) -> dict[str, Any] | None:
    files: list[dict[str, Any]] = version.get("files") or []
    for file in files:
        if file_hash.lower() in (str(v).lower() for v in (file.get("hashes") or {}).values()):
            return file
    return None


# --- recommended weight ----------------------------------------------------------------------------


def _recommended_weight(
    model_type: ModelType, version: dict[str, Any], model_html: str, version_html: str
) -> tuple[float | None, str, list[float] | None]:
    """(weight, provenance, [min, max] if CivitAI states them), by ``hubloader.core.triggers``' precedence:
    ``settings.strength`` → a strength in the version's, then the model's description → the median of
    the example images' weights → unknown (None; a UI then applies its own default).

    Only the explicit setting counts for types without a strength (a checkpoint's "denoise strength"
    in a description is not a LoRA weight).
    """
    settings = found_settings if isinstance(found_settings := version.get("settings"), dict) else {}
    low, high = settings.get("minStrength"), settings.get("maxStrength")
    numbers = [float(v) for v in (low, high) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    weight_range = numbers if len(numbers) == 2 else None
    descriptions = "\n".join(text for text in (version_html, model_html) if text)
    for candidate in weights_from_civitai({**version, "description": descriptions}):
        if candidate.source == "civitai.settings" or model_type in WEIGHTED_TYPES:
            return float(candidate.value), candidate.source, weight_range
    return None, "", weight_range


# --- small helpers ---------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    _BREAKS = frozenset({"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """CivitAI's HTML descriptions as plain text: one line per block, entities decoded, spaces tidied."""
    if not markup:
        return ""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    # A cut-off tag at the end (truncated descriptions) is left as data by the parser: it is not text.
    text = re.sub(r"<[A-Za-z/][^>]*\Z", "", "".join(parser.parts))
    text = html.unescape(text).replace("\xa0", " ")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _parse_time(value: Any) -> datetime:
    """CivitAI's ISO times ("…Z", or naive meaning UTC); now if absent or unreadable."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(timezone.utc)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
