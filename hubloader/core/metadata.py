"""Plain data shared by every part of Hubloader: dataclasses and enums, no behaviour beyond mapping.

Python 3.10 compatible on purpose (A1111 runs 3.10): ``(str, Enum)`` instead of ``StrEnum``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


_E = TypeVar("_E", bound="_StrEnum")


class _StrEnum(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls: type[_E], value: object, default: _E | None = None) -> _E:
        """Accept a member, its value or its name in any case; ``default`` (or ValueError) otherwise."""
        if isinstance(value, cls):
            return value
        text = str(value or "").strip().lower()
        for member in cls:
            if text in (member.value.lower(), member.name.lower()):
                return member
        if default is not None:
            return default
        raise ValueError(f"{value!r} is not a valid {cls.__name__}; expected one of: {', '.join(m.value for m in cls)}")


class Source(_StrEnum):
    HUGGINGFACE = "huggingface"
    CIVITAI = "civitai"
    LOCAL = "local"
    URL = "url"


class ModelType(_StrEnum):
    """What a file is for; the value doubles as the ComfyUI-ish folder kind name."""

    BASE_MODEL = "checkpoint"
    LORA = "lora"
    LYCORIS = "lycoris"
    EMBEDDING = "embedding"
    VAE = "vae"
    CONTROLNET = "controlnet"
    UPSCALER = "upscaler"
    TEXT_ENCODER = "text_encoder"
    DIFFUSION_MODEL = "diffusion_model"
    HYPERNETWORK = "hypernetwork"
    CLIP_VISION = "clip_vision"
    OTHER = "other"

    CHECKPOINT = "checkpoint"  # alias of BASE_MODEL: the word users and CivitAI use

    @classmethod
    def from_civitai(cls, value: str | None) -> ModelType:
        return _CIVITAI_TYPES.get((value or "").lower(), cls.OTHER)

    def civitai_names(self) -> list[str]:
        """CivitAI ``types`` strings that denote this kind (a LoRA search also asks for DoRA; LoCon is LYCORIS)."""
        return [name for name, kind in _CIVITAI_TYPE_NAMES if kind is self]


_CIVITAI_TYPE_NAMES: list[tuple[str, ModelType]] = [
    ("Checkpoint", ModelType.BASE_MODEL),
    ("LORA", ModelType.LORA),
    ("DoRA", ModelType.LORA),
    ("LoCon", ModelType.LYCORIS),
    ("TextualInversion", ModelType.EMBEDDING),
    ("VAE", ModelType.VAE),
    ("Controlnet", ModelType.CONTROLNET),
    ("Upscaler", ModelType.UPSCALER),
    ("Hypernetwork", ModelType.HYPERNETWORK),
    ("TextEncoder", ModelType.TEXT_ENCODER),
    ("UNet", ModelType.DIFFUSION_MODEL),
    ("CLIPVision", ModelType.CLIP_VISION),
    ("CLIP", ModelType.TEXT_ENCODER),
]
_CIVITAI_TYPES = {name.lower(): kind for name, kind in _CIVITAI_TYPE_NAMES}


class BaseModel(_StrEnum):
    """The architecture family a model was made for (what it is compatible with)."""

    SD15 = "sd15"
    SD2 = "sd2"
    SDXL = "sdxl"
    PONY = "pony"
    ILLUSTRIOUS = "illustrious"
    NOOBAI = "noobai"
    SD3 = "sd3"
    SD35 = "sd35"
    FLUX1 = "flux1"
    FLUX2 = "flux2"
    OTHER = "other"
    UNKNOWN = "unknown"

    @property
    def family(self) -> BaseModel:
        """The root architecture: Pony, Illustrious and NoobAI are SDXL underneath."""
        return BaseModel.SDXL if self in _SDXL_FAMILY else self

    def compatible_with(self, other: BaseModel) -> bool:
        return self.family is other.family

    @classmethod
    def from_civitai(cls, value: str | None) -> BaseModel:
        """Map CivitAI's ``baseModel`` strings ("SD 1.5", "SDXL 1.0", "Pony", "Flux.1 D" …)."""
        text = (value or "").strip().lower()
        if not text:
            return cls.UNKNOWN
        if text in _CIVITAI_BASE_EXACT:
            return _CIVITAI_BASE_EXACT[text]
        for prefix, base in _CIVITAI_BASE_PREFIXES:
            if text.startswith(prefix):
                return base
        return cls.OTHER

    def civitai_names(self) -> list[str]:
        """CivitAI ``baseModels`` filter strings for this base (SDXL includes its Lightning/Turbo variants)."""
        return list(_CIVITAI_FILTER_NAMES.get(self, []))

    @classmethod
    def from_hf_tags(cls, tags: list[str] | None) -> BaseModel:
        """Guess from HuggingFace tags and ``base_model:`` entries (e.g. ``base_model:stabilityai/sdxl``)."""
        joined = " ".join(t.lower() for t in tags or [])
        for needle, base in _HF_TAG_HINTS:
            if needle in joined:
                return base
        return cls.UNKNOWN


_SDXL_FAMILY = frozenset({BaseModel.SDXL, BaseModel.PONY, BaseModel.ILLUSTRIOUS, BaseModel.NOOBAI})

_CIVITAI_BASE_EXACT = {
    "pony": BaseModel.PONY,
    "illustrious": BaseModel.ILLUSTRIOUS,
    "noobai": BaseModel.NOOBAI,
}
_CIVITAI_BASE_PREFIXES: list[tuple[str, BaseModel]] = [
    ("sd 1.", BaseModel.SD15),
    ("sd 2.", BaseModel.SD2),
    ("sdxl", BaseModel.SDXL),
    ("sd 3.5", BaseModel.SD35),
    ("sd 3", BaseModel.SD3),
    ("flux.1", BaseModel.FLUX1),
    ("flux.2", BaseModel.FLUX2),
]
_CIVITAI_FILTER_NAMES: dict[BaseModel, list[str]] = {
    BaseModel.SD15: ["SD 1.4", "SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper"],
    BaseModel.SD2: ["SD 2.0", "SD 2.0 768", "SD 2.1", "SD 2.1 768", "SD 2.1 Unclip"],
    BaseModel.SDXL: [
        "SDXL 0.9",
        "SDXL 1.0",
        "SDXL 1.0 LCM",
        "SDXL Lightning",
        "SDXL Hyper",
        "SDXL Turbo",
        "SDXL Distilled",
    ],
    BaseModel.PONY: ["Pony"],
    BaseModel.ILLUSTRIOUS: ["Illustrious"],
    BaseModel.NOOBAI: ["NoobAI"],
    BaseModel.SD3: ["SD 3"],
    BaseModel.SD35: ["SD 3.5", "SD 3.5 Large", "SD 3.5 Large Turbo", "SD 3.5 Medium"],
    BaseModel.FLUX1: ["Flux.1 D", "Flux.1 S", "Flux.1 Krea", "Flux.1 Kontext"],
    BaseModel.FLUX2: ["Flux.2 D", "Flux.2 Klein 9B", "Flux.2 Klein 9B-base", "Flux.2 Klein 4B", "Flux.2 Klein 4B-base"],
}
# Order matters: the more specific needle first.
_HF_TAG_HINTS: list[tuple[str, BaseModel]] = [
    ("pony", BaseModel.PONY),
    ("illustrious", BaseModel.ILLUSTRIOUS),
    ("noobai", BaseModel.NOOBAI),
    ("stable-diffusion-3.5", BaseModel.SD35),
    ("stable-diffusion-3", BaseModel.SD3),
    ("sd3", BaseModel.SD3),
    ("flux.1", BaseModel.FLUX1),
    ("flux1", BaseModel.FLUX1),
    ("flux", BaseModel.FLUX1),
    ("stable-diffusion-xl", BaseModel.SDXL),
    ("sdxl", BaseModel.SDXL),
    ("stable-diffusion-2", BaseModel.SD2),
    ("stable-diffusion-v1-5", BaseModel.SD15),
    ("stable-diffusion-v1", BaseModel.SD15),
    ("sd-1.5", BaseModel.SD15),
    ("sd15", BaseModel.SD15),
]


class ModelFormat(_StrEnum):
    SAFETENSORS = "safetensors"
    CKPT = "ckpt"
    PICKLE = "pickle"  # .pt / .bin / .pth: a pickle under another name
    DIFFUSERS = "diffusers"  # a folder in diffusers layout
    GGUF = "gguf"
    ONNX = "onnx"
    OTHER = "other"

    @property
    def is_pickle(self) -> bool:
        return self in (ModelFormat.CKPT, ModelFormat.PICKLE)

    @classmethod
    def from_filename(cls, name: str) -> ModelFormat:
        suffix = Path(name).suffix.lower()
        return _FORMAT_BY_SUFFIX.get(suffix, cls.OTHER)


_FORMAT_BY_SUFFIX = {
    ".safetensors": ModelFormat.SAFETENSORS,
    ".sft": ModelFormat.SAFETENSORS,
    ".ckpt": ModelFormat.CKPT,
    ".pt": ModelFormat.PICKLE,
    ".pth": ModelFormat.PICKLE,
    ".bin": ModelFormat.PICKLE,
    ".gguf": ModelFormat.GGUF,
    ".onnx": ModelFormat.ONNX,
}

MODEL_EXTENSIONS = frozenset(_FORMAT_BY_SUFFIX)


class SortBy(_StrEnum):
    POPULARITY = "popular"  # most downloaded
    RATING = "rating"
    NEWEST = "newest"
    LIKES = "likes"

    DOWNLOADS = "popular"  # alias

    def civitai(self) -> str:
        return _CIVITAI_SORTS[self]

    def huggingface(self) -> HubSort:
        return _HF_SORTS[self]


_CIVITAI_SORTS = {
    SortBy.POPULARITY: "Most Downloaded",
    SortBy.RATING: "Highest Rated",
    SortBy.NEWEST: "Newest",
    SortBy.LIKES: "Most Liked",
}
#: The orders the Hub's list_models sorts by that a SortBy maps to.
HubSort = Literal["downloads", "likes", "last_modified"]
# HuggingFace has no ratings; likes are the closest signal.
_HF_SORTS: dict[SortBy, HubSort] = {
    SortBy.POPULARITY: "downloads",
    SortBy.RATING: "likes",
    SortBy.NEWEST: "last_modified",
    SortBy.LIKES: "likes",
}


@dataclass
class ModelFilter:
    """Search filters. The first two are the seed's HuggingFace ones; the rest apply to both sources."""

    task: str | None = None
    library: str | None = None
    tags: list[str] = field(default_factory=list)
    author: str | None = None
    base_model: BaseModel | None = None
    model_type: ModelType | None = None
    sort: SortBy | None = None
    nsfw: bool | None = None


@dataclass
class ModelFile:
    """One file of a model version, as the source describes it."""

    name: str
    size_bytes: int = 0
    url: str = ""
    sha256: str = ""
    hashes: dict[str, str] = field(default_factory=dict)  # "AutoV2" → hex, "BLAKE3" → hex …
    format: ModelFormat = ModelFormat.OTHER
    primary: bool = False
    kind: str = ""  # CivitAI file type: Model, Pruned Model, VAE, Training Data …
    precision: str = ""  # fp16, fp32, bf16 …


@dataclass
class ModelMetadata:
    """Everything known about one model (one version of it), from its source and its file."""

    model_id: str
    name: str
    source: Source
    type: ModelType = ModelType.OTHER
    base_model: BaseModel = BaseModel.UNKNOWN
    version: str = ""

    format: ModelFormat = ModelFormat.SAFETENSORS
    size_bytes: int = 0
    sha256: str = ""

    trigger_words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str = ""

    download_count: int = 0
    rating: float = 0.0
    recommended_weight: float | None = None

    local_path: Path | None = None
    remote_url: str = ""

    created_at: datetime = field(default_factory=_utcnow)
    updated_at: datetime = field(default_factory=_utcnow)

    # Beyond the seed: what a real index needs.
    version_id: str = ""
    hashes: dict[str, str] = field(default_factory=dict)  # AutoV1/AutoV2/AutoV3/BLAKE3/CRC32 → hex
    files: list[ModelFile] = field(default_factory=list)
    preview_urls: list[str] = field(default_factory=list)
    air: str = ""
    author: str = ""
    like_count: int = 0
    nsfw: bool = False
    training_tags: list[str] = field(default_factory=list)  # ss_tag_frequency tops, never triggers
    # Provenance: "civitai", "modelspec", "kohya", "sidecar", "user" for triggers;
    # "civitai.settings", "civitai.description", "civitai.images", "sidecar", "user" for the weight.
    trigger_words_source: str = ""
    recommended_weight_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_hash(self) -> str:
        """A1111's AutoV2 "shorthash": the first 10 hex of the SHA256."""
        return (self.hashes.get("AutoV2") or self.sha256[:10]).lower()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as their values, paths and dates as strings)."""
        data: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["source"] = Source.parse(values.get("source", "local"))
        values["type"] = ModelType.parse(values.get("type"), ModelType.OTHER)
        values["base_model"] = BaseModel.parse(values.get("base_model"), BaseModel.UNKNOWN)
        values["format"] = ModelFormat.parse(values.get("format"), ModelFormat.OTHER)
        if values.get("local_path"):
            values["local_path"] = Path(values["local_path"])
        for key in ("created_at", "updated_at"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        values["files"] = [
            f
            if isinstance(f, ModelFile)
            else ModelFile(**{**f, "format": ModelFormat.parse(f.get("format"), ModelFormat.OTHER)})
            for f in values.get("files") or []
        ]
        return cls(**values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class DownloadResult:
    """What a finished download produced. ``path`` is complete and verified."""

    path: Path
    sha256: str
    size_bytes: int
    metadata: ModelMetadata | None = None
    url: str = ""
    reused: bool = False  # an identical file was already there; nothing was transferred
    resumed_from: int = 0  # bytes already on disk when this transfer started
    elapsed_s: float = 0.0
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def size_gb(self) -> float:
        return self.size_bytes / 1024**3


@dataclass
class CacheCleanupReport:
    deleted_count: int = 0
    freed_space_gb: float = 0.0
    kept_models: list[ModelMetadata] = field(default_factory=list)
    deleted_models: list[ModelMetadata] = field(default_factory=list)
    dry_run: bool = False
    total_size_gb: float = 0.0  # cache size after the cleanup (or after it would run)
    errors: list[str] = field(default_factory=list)
