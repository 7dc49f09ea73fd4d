"""Missing models, resolved: what a workflow or a generated image needs, where it is, where to get it.

Four steps, each usable alone:

1. **Read** (:func:`read_workflow`): a ComfyUI workflow in UI format (subgraphs included) or API/prompt
   format, from a ``.json`` file or a PNG/WebP/JPEG that carries one, or A1111 infotext.
2. **Find** (:func:`find_references`): every model the workflow names — known loader inputs mapped to
   their folder kind, any widget value ending in a model extension, ``properties.models`` and top-level
   ``models`` entries (name, url, directory, hash). Muted and bypassed nodes are skipped.
3. **Match locally** (:meth:`Resolver.check`): exact path → same file name in another subfolder of that
   kind (reported as the value to use) → same hash anywhere in the registry.
4. **Resolve and fetch** (:meth:`Resolver.resolve`, :meth:`Resolver.fetch`): URL in the workflow → hash
   on CivitAI (batched) → our registry → search by file name on CivitAI and HuggingFace; each candidate
   carries a confidence and the evidence. Fetching goes through the download engine into the host's
   folders, a few at a time, refusing bytes whose hash differs from the one the workflow or source gives.

Folder kinds are ComfyUI's names ("checkpoints", "loras", …), as in :mod:`hubloader.core.folders`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hubloader.core.errors import ConfigError, HubloaderError, IntegrityError, InvalidFile, InvalidReference
from hubloader.core.folders import KIND_BY_TYPE, LEGACY_KINDS, ModelFolders, active_folders, safe_filename
from hubloader.core.metadata import MODEL_EXTENSIONS, ModelMetadata, ModelType
from hubloader.core.settings import (
    DEFAULT_CIVITAI_ENDPOINT,
    DEFAULT_HF_ENDPOINT,
    civitai_endpoint,
    hf_endpoint,
    hf_token,
    redact_url,
)

# --- what the built-in loaders take --------------------------------------------------------------

#: Loader node → its widgets in order, each with the folder kind it names (None: not a model widget).
#: The order is the node's INPUT_TYPES order, i.e. the positions in a UI-format ``widgets_values`` list.
LOADER_WIDGETS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "CheckpointLoaderSimple": (("ckpt_name", "checkpoints"),),
    "CheckpointLoader": (("config_name", None), ("ckpt_name", "checkpoints")),
    "unCLIPCheckpointLoader": (("ckpt_name", "checkpoints"),),
    "ImageOnlyCheckpointLoader": (("ckpt_name", "checkpoints"),),
    "LoraLoader": (("lora_name", "loras"), ("strength_model", None), ("strength_clip", None)),
    "LoraLoaderModelOnly": (("lora_name", "loras"), ("strength_model", None)),
    "VAELoader": (("vae_name", "vae"),),
    "ControlNetLoader": (("control_net_name", "controlnet"),),
    "DiffControlNetLoader": (("control_net_name", "controlnet"),),
    "UNETLoader": (("unet_name", "diffusion_models"), ("weight_dtype", None)),
    "CLIPLoader": (("clip_name", "text_encoders"), ("type", None), ("device", None)),
    "DualCLIPLoader": (("clip_name1", "text_encoders"), ("clip_name2", "text_encoders"), ("type", None)),
    "TripleCLIPLoader": tuple((f"clip_name{i}", "text_encoders") for i in (1, 2, 3)),
    "QuadrupleCLIPLoader": tuple((f"clip_name{i}", "text_encoders") for i in (1, 2, 3, 4)),
    "CLIPVisionLoader": (("clip_name", "clip_vision"),),
    "UpscaleModelLoader": (("model_name", "upscale_models"),),
    "StyleModelLoader": (("style_model_name", "style_models"),),
    "GLIGENLoader": (("gligen_name", "gligen"),),
    "HypernetworkLoader": (("hypernetwork_name", "hypernetworks"), ("strength", None)),
    "PhotoMakerLoader": (("photomaker_model_name", "photomaker"),),
    # Our own nodes (nodes/loaders.py), widgets in their UI order; ``source`` holds a reference, not a file.
    "HubloaderCheckpointLoader": (("ckpt_name", "checkpoints"), ("source", None)),
    "HubloaderLoraLoader": (
        ("lora_name", "loras"),
        ("source", None),
        ("strength_model", None),
        ("strength_clip", None),
        ("auto_strength", None),
        ("prepend_triggers", None),
    ),
    "HubloaderLoraLoaderModelOnly": (
        ("lora_name", "loras"),
        ("source", None),
        ("strength_model", None),
        ("auto_strength", None),
        ("prepend_triggers", None),
    ),
    "HubloaderVAELoader": (("vae_name", "vae"), ("source", None)),
    "HubloaderControlNetLoader": (("control_net_name", "controlnet"), ("source", None)),
    "HubloaderUpscaleModelLoader": (("model_name", "upscale_models"), ("source", None)),
    "HubloaderEmbedding": (("embedding_name", "embeddings"), ("source", None), ("weight", None)),
    "HubloaderTriggerWords": (("lora_name", "loras"),),
}

#: Input names that say their kind on any node (our ``Hubloader*`` nodes name inputs like the built-ins).
INPUT_KINDS: dict[str, str] = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "control_net_name": "controlnet",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "clip_vision_name": "clip_vision",
    "upscale_model_name": "upscale_models",
    "embedding_name": "embeddings",
    "hypernetwork_name": "hypernetworks",
}

#: Words in a node type that hint at the kind of an unknown node's model widget; most specific first.
_TYPE_HINTS: tuple[tuple[str, str], ...] = (
    ("clipvision", "clip_vision"),
    ("controlnet", "controlnet"),
    ("upscale", "upscale_models"),
    ("lora", "loras"),
    ("vae", "vae"),
    ("unet", "diffusion_models"),
    ("diffusion", "diffusion_models"),
    ("clip", "text_encoders"),
    ("textencoder", "text_encoders"),
    ("checkpoint", "checkpoints"),
    ("ckpt", "checkpoints"),
    ("embedding", "embeddings"),
    ("hypernetwork", "hypernetworks"),
)

MUTED_MODES = frozenset({2, 4})  # 2 = never (muted), 4 = bypass
_HEX = re.compile(r"^[0-9a-fA-F]+$")


# --- result types ---------------------------------------------------------------------------------


class Status(str, Enum):
    FOUND = "found"  # at the exact path the workflow names
    FOUND_ELSEWHERE = "found_elsewhere"  # same file name in another subfolder of its kind: use `use_as`
    FOUND_BY_HASH = "found_by_hash"  # a file with the same hash is known to the registry
    RESOLVED = "resolved"  # missing, and a source to fetch it from was found
    FETCHED = "fetched"  # downloaded and verified
    UNRESOLVED = "unresolved"  # missing, no trustworthy source: see `reason`
    FAILED = "failed"  # a source was found but fetching it failed: see `reason`

    def __str__(self) -> str:
        return self.value


LOCAL_STATUSES = frozenset({Status.FOUND, Status.FOUND_ELSEWHERE, Status.FOUND_BY_HASH})


@dataclass
class NodeUse:
    """Where in the workflow a model is named, so a face can point at it or rewrite it."""

    node_id: str  # "30", or "83:30" for node 30 inside the subgraph instance 83
    node_type: str
    input_name: str = ""
    widget_index: int | None = None  # position in a UI-format widgets_values list
    subgraph: str = ""  # id of the subgraph definition that holds the node


@dataclass
class ModelReference:
    """One model a workflow needs. ``name`` is as written (may contain subfolders; may lack an extension
    when it comes from A1111 infotext). ``kind`` is a ComfyUI folder kind, "" when unknown."""

    name: str
    kind: str = ""
    url: str = ""
    hashes: dict[str, str] = field(default_factory=dict)  # "SHA256"/"AutoV2"/"AutoV3"/… → lower-case hex
    uses: list[NodeUse] = field(default_factory=list)
    origin: str = ""  # "loader" | "widget" | "models" | "infotext"

    @property
    def file_name(self) -> str:
        return self.name.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def sha256(self) -> str:
        digest = self.hashes.get("SHA256", "")
        return digest if len(digest) == 64 else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """A place the missing file can be fetched from, with how sure we are and why."""

    url: str
    file_name: str
    source: str  # "huggingface" | "civitai" | "url"
    confidence: float  # 0–1
    evidence: str
    size_bytes: int = 0
    sha256: str = ""
    air: str = ""
    kind: str = ""  # the kind the source states (used when the workflow does not say)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["url"] = redact_url(self.url)
        return data


@dataclass
class ModelStatus:
    reference: ModelReference
    status: Status
    path: Path | None = None  # local file, when found or fetched
    use_as: str = ""  # the value a loader widget should hold (relative to the kind's folder)
    candidates: list[Candidate] = field(default_factory=list)  # best first
    reason: str = ""
    sha256: str = ""
    size_bytes: int = 0

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def is_local(self) -> bool:
        return self.status in LOCAL_STATUSES or self.status is Status.FETCHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference.to_dict(),
            "status": self.status.value,
            "path": str(self.path) if self.path else None,
            "use_as": self.use_as,
            "candidates": [c.to_dict() for c in self.candidates],
            "reason": self.reason,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
        }


@dataclass
class ResolutionReport:
    items: list[ModelStatus] = field(default_factory=list)
    source: str = ""  # the file the workflow came from, if any

    def by_status(self, *statuses: Status) -> list[ModelStatus]:
        return [item for item in self.items if item.status in statuses]

    @property
    def missing(self) -> list[ModelStatus]:
        return [item for item in self.items if not item.is_local]

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for item in self.items:
            counts[item.status.value] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "counts": self.counts(), "items": [item.to_dict() for item in self.items]}


@dataclass
class Workflow:
    """A workflow as read: its format ("ui", "api" or "infotext") and its data (a dict, or the text)."""

    format: str
    data: Any
    path: Path | None = None


# --- 1. reading -------------------------------------------------------------------------------------

IMAGE_SUFFIXES = frozenset({".png", ".webp", ".jpg", ".jpeg"})
# ComfyUI's SaveAnimatedWEBP: EXIF 0x0110 (Model) = "prompt:<json>", then 0x010F (Make), 0x010E … =
# "<extra_pnginfo key>:<json>" counting down, "workflow" being the first key.
_EXIF_COMFY_TAGS = (0x0110, 0x010F, 0x010E, 0x010D, 0x010C)
_EXIF_IFD, _EXIF_USER_COMMENT = 0x8769, 0x9286  # A1111 writes infotext there in WebP/JPEG


def read_workflow(source: str | os.PathLike[str] | dict[str, Any]) -> Workflow:
    """Read a workflow from a path (.json, PNG, WebP, JPEG, .txt infotext), a dict, or JSON/infotext text.

    An image may carry several: the UI ``workflow`` wins (it has ``properties.models``), then the API
    ``prompt``, then A1111 ``parameters``.
    """
    if isinstance(source, dict):
        return _classify(source, None)
    if isinstance(source, str) and not _looks_like_path(source):
        return _from_text(source, None)
    path = Path(source)
    if not path.is_file():
        raise InvalidFile(f"{path} does not exist or is not a file.", hint="Give the path of a workflow or an image.")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _from_image(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFile(
            f"{path} could not be read as text ({exc}).", hint="Give a .json workflow or an image."
        ) from exc
    return _from_text(text, path)


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and len(text) < 4096 and not text.lstrip().startswith(("{", "["))


def _from_text(text: str, path: Path | None) -> Workflow:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return _classify(json.loads(stripped), path)
        except ValueError as exc:
            raise InvalidFile(
                f"{path or 'The text'} is not valid JSON ({exc}).", hint="Export the workflow again."
            ) from exc
    if stripped:
        return Workflow("infotext", stripped, path)
    raise InvalidFile(f"{path or 'The text'} is empty.", hint="Give a ComfyUI workflow or A1111 infotext.")


def _classify(data: Any, path: Path | None) -> Workflow:
    """UI format has a ``nodes`` list; API format maps node ids to ``{class_type, inputs}``."""
    if isinstance(data, dict):
        if isinstance(data.get("nodes"), list):
            return Workflow("ui", data, path)
        # Wrappers seen in the wild: {"workflow": UI}, {"prompt": API, "extra_data": …}.
        if isinstance(data.get("workflow"), dict):
            return _classify(data["workflow"], path)
        if isinstance(data.get("prompt"), dict):
            return _classify(data["prompt"], path)
        if data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
            return Workflow("api", data, path)
    raise InvalidFile(
        f"{path or 'The data'} is not a ComfyUI workflow (neither UI format with 'nodes' nor API format).",
        hint="Save the workflow from ComfyUI (Workflow → Save / Export (API)) and try again.",
    )


def image_metadata(path: Path) -> dict[str, str]:
    """The text entries an image carries: PNG text chunks, or ComfyUI's/A1111's EXIF entries in WebP/JPEG."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - every host ships Pillow
        raise ConfigError("Reading images needs Pillow.", hint="Install it with `pip install pillow`.") from exc
    try:
        with Image.open(path) as image:
            entries = {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
            for key, value in image.info.items():
                if isinstance(value, str) and key in ("workflow", "prompt", "parameters"):
                    entries.setdefault(key, value)
            exif = image.getexif()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise InvalidFile(f"{path} is not a readable image ({exc}).") from exc
    for tag in _EXIF_COMFY_TAGS:
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and ":" in value:
            key, _, payload = value.partition(":")
            entries.setdefault(key.strip(), payload)
    comment = exif.get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    if comment:
        entries.setdefault("parameters", _user_comment(comment))
    return entries


def _user_comment(value: bytes | str) -> str:
    """EXIF UserComment: an 8-byte charset code then the text (A1111 writes UNICODE = UTF-16)."""
    if isinstance(value, str):
        return value
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        # piexif writes big-endian; a BOM-less little-endian body shows as NULs in odd positions.
        big = body[:1] == b"\x00"
        return body.decode("utf-16-be" if big else "utf-16-le", "replace").strip("\x00")
    return body.decode("utf-8", "replace").strip("\x00")


def _from_image(path: Path) -> Workflow:
    entries = image_metadata(path)
    for key in ("workflow", "prompt"):
        if entries.get(key):
            try:
                return _classify(json.loads(entries[key]), path)
            except (ValueError, InvalidFile):
                continue  # a damaged entry; another one may still be usable
    if entries.get("parameters"):
        return Workflow("infotext", entries["parameters"], path)
    raise InvalidFile(
        f"{path} carries no workflow, prompt or A1111 parameters.",
        hint="The image may have been saved with metadata disabled or re-encoded by another program.",
    )


# --- 2. finding references ------------------------------------------------------------------------


def find_references(workflow: Workflow | dict[str, Any] | str | os.PathLike[str]) -> list[ModelReference]:
    """Every model the workflow names, one entry per (kind, file), merged across nodes."""
    if not isinstance(workflow, Workflow):
        workflow = read_workflow(workflow)
    found = _Collector()
    if workflow.format == "ui":
        _scan_ui(workflow.data, found)
    elif workflow.format == "api":
        _scan_api(workflow.data, found)
    else:
        _scan_infotext(workflow.data, found)
    return found.references()


class _Collector:
    """Merges sightings of the same file: one reference, many uses; URL, hashes and kind filled in as seen."""

    def __init__(self) -> None:
        self._refs: dict[tuple[str, str], ModelReference] = {}

    def add(self, ref: ModelReference) -> None:
        key = (ref.kind, _norm(ref.name))
        existing = self._refs.get(key)
        if existing is None and ref.kind:
            # A kind-less sighting of the same name (e.g. a top-level models entry) takes this kind.
            existing = self._refs.pop(("", _norm(ref.name)), None)
            if existing is not None:
                existing.kind = ref.kind
                self._refs[key] = existing
        if existing is None and not ref.kind:
            existing = next((r for (k, n), r in self._refs.items() if n == _norm(ref.name)), None)
        if existing is None:
            self._refs[key] = ref
            return
        existing.url = existing.url or ref.url
        for name, digest in ref.hashes.items():
            existing.hashes.setdefault(name, digest)
        existing.uses.extend(ref.uses)

    def references(self) -> list[ModelReference]:
        return list(self._refs.values())


def _norm(name: str) -> str:
    return name.replace("\\", "/").strip()


def _is_model_file(value: Any) -> bool:
    return isinstance(value, str) and os.path.splitext(value.strip())[1].lower() in MODEL_EXTENSIONS


def _kind_from_type(node_type: str) -> str:
    text = re.sub(r"[^a-z]", "", node_type.lower())
    return next((kind for word, kind in _TYPE_HINTS if word in text), "")


def _model_entry(entry: Any) -> tuple[str, str, str, dict[str, str]] | None:
    """A ``models`` entry → (name, url, directory, hashes), or None when it has no name."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
        return None
    hashes = {}
    digest, hash_type = str(entry.get("hash") or "").strip().lower(), str(entry.get("hash_type") or "").strip()
    if digest and _HEX.match(digest):
        hashes[_hash_name(hash_type, digest)] = digest
    directory = LEGACY_KINDS.get(str(entry.get("directory") or ""), str(entry.get("directory") or ""))
    return entry["name"].strip(), str(entry.get("url") or "").strip(), directory, hashes


def _hash_name(hash_type: str, digest: str) -> str:
    names = {"sha256": "SHA256", "autov1": "AutoV1", "autov2": "AutoV2", "autov3": "AutoV3", "blake3": "BLAKE3"}
    if hash_type.lower() in names:
        return names[hash_type.lower()]
    return {8: "AutoV1", 10: "AutoV2", 12: "AutoV3"}.get(len(digest), "SHA256")


def _scan_ui(graph: dict[str, Any], found: _Collector) -> None:
    definitions = {
        sub["id"]: sub
        for sub in (graph.get("definitions") or {}).get("subgraphs") or []
        if isinstance(sub, dict) and sub.get("id")
    }
    _scan_ui_nodes(graph.get("nodes") or [], "", "", definitions, found, seen=set())
    for entry in graph.get("models") or []:
        parsed = _model_entry(entry)
        if parsed:
            name, url, directory, hashes = parsed
            found.add(ModelReference(name, directory, url, hashes, origin="models"))


def _scan_ui_nodes(
    nodes: list[Any],
    prefix: str,
    subgraph: str,
    definitions: dict[str, dict[str, Any]],
    found: _Collector,
    seen: set[str],
) -> None:
    for node in nodes:
        if not isinstance(node, dict) or node.get("mode") in MUTED_MODES:
            continue
        node_type, node_id = str(node.get("type") or ""), f"{prefix}{node.get('id')}"
        if node_type in definitions:
            if node_type not in seen:  # a subgraph instance: walk its definition (never into a cycle)
                sub = definitions[node_type]
                _scan_ui_nodes(sub.get("nodes") or [], f"{node_id}:", node_type, definitions, found, seen | {node_type})
            continue
        _scan_ui_node(node, node_type, node_id, subgraph, found)


def _scan_ui_node(node: dict[str, Any], node_type: str, node_id: str, subgraph: str, found: _Collector) -> None:
    values = node.get("widgets_values")
    entries = [e for e in map(_model_entry, (node.get("properties") or {}).get("models") or []) if e]
    by_name = {_norm(e[0]): e for e in entries}
    by_file = {_norm(e[0]).rsplit("/", 1)[-1]: e for e in entries}
    widgets = LOADER_WIDGETS.get(node_type)
    if isinstance(values, dict):
        items = [(name, None, value) for name, value in values.items()]
    elif isinstance(values, list):
        names = [w[0] for w in widgets] if widgets else []
        items = [(names[i] if i < len(names) else "", i, value) for i, value in enumerate(values)]
    else:
        items = []
    loader_kinds = dict(widgets) if widgets else {}
    for input_name, index, value in items:
        # Values without a model extension are options, not files (VAELoader's "taesd", "pixel_space").
        if not _is_model_file(value):
            continue
        kind = (loader_kinds.get(input_name) or INPUT_KINDS.get(input_name)) if input_name else None
        name = value.strip()
        entry = by_name.get(_norm(name)) or by_file.get(_norm(name).rsplit("/", 1)[-1])
        url, directory, hashes = (entry[1], entry[2], entry[3]) if entry else ("", "", {})
        kind = kind or directory or _kind_from_type(node_type)
        origin = "loader" if input_name in loader_kinds or input_name in INPUT_KINDS else "widget"
        use = NodeUse(node_id, node_type, input_name, index, subgraph)
        found.add(ModelReference(name, kind, url, dict(hashes), [use], origin))


def _scan_api(prompt: dict[str, Any], found: _Collector) -> None:
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or node.get("mode") in MUTED_MODES:
            continue
        node_type = str(node.get("class_type") or "")
        loader_kinds = dict(LOADER_WIDGETS.get(node_type, ()))
        for input_name, value in (node.get("inputs") or {}).items():
            if not _is_model_file(value):
                continue  # links ([node_id, slot]), numbers, options
            kind = loader_kinds.get(input_name) or INPUT_KINDS.get(input_name)
            origin = "loader" if kind else "widget"
            kind = kind or _kind_from_type(node_type)
            found.add(
                ModelReference(value.strip(), kind, uses=[NodeUse(str(node_id), node_type, input_name)], origin=origin)
            )


def _scan_infotext(text: str, found: _Collector) -> None:
    from hubloader.workflows.infotext import infotext_models, parse_infotext

    for model in infotext_models(parse_infotext(text)):
        if model.name or model.hashes:
            found.add(ModelReference(model.name, model.kind, hashes=dict(model.hashes), origin="infotext"))


# --- 3. local matching ----------------------------------------------------------------------------


def _folder_dirs(folders: ModelFolders, kind: str) -> list[Path]:
    try:
        return folders.dirs(kind)
    except ConfigError:
        return []  # a kind this host has no folder for (e.g. "style_models" outside ComfyUI)


def _name_matches(ref_name: str, file_name: str) -> bool:
    """Same file name; a name without a model extension (A1111's ``Model: foo``) matches any extension."""
    if ref_name == file_name:
        return True
    return not _is_model_file(ref_name) and _is_model_file(file_name) and os.path.splitext(file_name)[0] == ref_name


class LocalIndex:
    """Every model file under the folders, walked once per kind on first use."""

    def __init__(self, folders: ModelFolders) -> None:
        self.folders = folders
        self._files: dict[str, list[tuple[str, Path]]] = {}

    def files(self, kind: str) -> list[tuple[str, Path]]:
        """(path relative to its kind folder, absolute path) for every model file of that kind."""
        if kind not in self._files:
            listed: list[tuple[str, Path]] = []
            for root in _folder_dirs(self.folders, kind):
                for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    for name in sorted(filenames):
                        if _is_model_file(name):
                            full = Path(dirpath) / name
                            listed.append((os.path.relpath(full, root), full))
            self._files[kind] = listed
        return self._files[kind]

    def find(self, ref: ModelReference) -> tuple[Status, Path, str] | None:
        """Exact path in one of the kind's folders, else the same file name in any subfolder."""
        kinds = [ref.kind] if ref.kind else self.folders.kinds()
        relative = _norm(ref.name)
        for kind in kinds:
            for root in _folder_dirs(self.folders, kind):
                exact = root / relative
                if _safe_join(root, relative) and exact.is_file():
                    return Status.FOUND, exact, ref.name
        for kind in kinds:
            for rel, full in self.files(kind):
                if _name_matches(ref.file_name, full.name):
                    same = _norm(rel) == relative or os.path.splitext(_norm(rel))[0] == relative
                    status = Status.FOUND if same else Status.FOUND_ELSEWHERE
                    return status, full, rel
        return None


def _safe_join(root: Path, relative: str) -> bool:
    """The workflow's name stays inside the folder (a hostile ``../../x`` is never looked at)."""
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts


# --- 4. resolution and fetching -------------------------------------------------------------------

ProgressCallback = Callable[[ModelStatus, Any], None]


class Resolver:
    """Find, match, resolve and fetch a workflow's models.

    Services are constructor arguments so each face can pass its own; any left out is created on first
    use (the real CivitAI/HuggingFace/registry classes, the active host's folders).
    """

    def __init__(
        self,
        folders: ModelFolders | None = None,
        *,
        civitai: Any = None,
        huggingface: Any = None,
        registry: Any = None,
        search: bool = True,
        min_confidence: float = 0.5,
        max_workers: int = 3,
        shared_cache: Any = None,
    ) -> None:
        self.folders = folders if folders is not None else active_folders()
        self._civitai, self._huggingface, self._registry = civitai, huggingface, registry
        # A hubloader.sharedcache.cache.SharedCache or its URL; None: HUBLOADER_SHARED_CACHE, if set (see fleet.py).
        self.shared_cache = shared_cache
        self.search = search
        self.min_confidence = min_confidence
        self.max_workers = max(1, max_workers)

    # Lazily built services: importing them costs (huggingface_hub, sqlite), and a purely local check needs none.
    @property
    def civitai(self) -> Any:
        if self._civitai is None:
            from hubloader.sources.civitai import CivitAIService

            self._civitai = CivitAIService()
        return self._civitai

    @property
    def huggingface(self) -> Any:
        if self._huggingface is None:
            from hubloader.sources.huggingface import HuggingFaceHubService

            self._huggingface = HuggingFaceHubService()
        return self._huggingface

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from hubloader.registry import ModelRegistry

            self._registry = ModelRegistry()
        return self._registry

    # -- local ----------------------------------------------------------------------------------

    def check(self, workflow: Any) -> ResolutionReport:
        """Local matching only: what is present (and under which name), what is missing. No network."""
        refs, source = self._references(workflow)
        index = LocalIndex(self.folders)
        report = ResolutionReport(source=source)
        for ref in refs:
            hit = index.find(ref)
            if hit is not None:
                status, path, use_as = hit
                report.items.append(ModelStatus(ref, status, path, use_as=use_as, size_bytes=path.stat().st_size))
                continue
            known = self._registry_file(ref)
            if known is not None:
                report.items.append(known)
                continue
            report.items.append(ModelStatus(ref, Status.UNRESOLVED, reason="not found in the model folders"))
        return report

    def _references(self, workflow: Any) -> tuple[list[ModelReference], str]:
        if isinstance(workflow, list) and all(isinstance(r, ModelReference) for r in workflow):
            return workflow, ""
        doc = workflow if isinstance(workflow, Workflow) else read_workflow(workflow)
        return find_references(doc), str(doc.path or "")

    def _registry_file(self, ref: ModelReference) -> ModelStatus | None:
        """A local file the registry knows under one of the reference's hashes."""
        if not ref.hashes:
            return None
        for digest in ref.hashes.values():
            meta = _lookup(self.registry, "find_model", digest)
            path = getattr(meta, "local_path", None)
            if path and Path(path).is_file() and _hash_agrees(meta, ref):
                path = Path(path)
                use_as = next(
                    (
                        _relative_to(path, root)
                        for root in _folder_dirs(self.folders, ref.kind)
                        if _is_under(path, root)
                    ),
                    "",
                )
                return ModelStatus(
                    ref,
                    Status.FOUND_BY_HASH,
                    path,
                    use_as=use_as,
                    sha256=getattr(meta, "sha256", ""),
                    size_bytes=path.stat().st_size,
                    reason="" if use_as else f"same file at {path}, outside the {ref.kind or 'model'} folders",
                )
        return None

    # -- remote ---------------------------------------------------------------------------------

    def resolve(self, workflow: Any) -> ResolutionReport:
        """Local matching, then a ranked list of sources for each missing model."""
        report = self.check(workflow)
        missing = [item for item in report.items if item.status is Status.UNRESOLVED]
        by_hash = self._civitai_by_hashes([item.reference for item in missing])
        for item in missing:
            item.candidates, reasons = self._candidates(item.reference, by_hash)
            item.candidates.sort(key=lambda c: c.confidence, reverse=True)
            best = item.chosen
            if best is not None and best.confidence >= self.min_confidence:
                item.status, item.reason = Status.RESOLVED, best.evidence
                item.sha256, item.size_bytes = best.sha256 or item.reference.sha256, best.size_bytes
            else:
                item.reason = "; ".join(reasons) or "no source names this file"
                if best is not None:
                    item.reason += f"; best guess below confidence {self.min_confidence}: {best.evidence}"
        return report

    def _candidates(self, ref: ModelReference, by_hash: dict[str, ModelMetadata]) -> tuple[list[Candidate], list[str]]:
        candidates: list[Candidate] = []
        reasons: list[str] = []
        if ref.url:
            try:
                candidates.append(self._from_url(ref))
            except HubloaderError as exc:
                reasons.append(f"its URL failed: {exc.message}")
        if not candidates:
            for hash_name, digest in ref.hashes.items():
                meta = by_hash.get(digest)
                if meta is not None:
                    candidates.append(_from_metadata(meta, ref, f"CivitAI knows {hash_name} {digest}", 0.95, digest))
                    break
            else:
                if ref.hashes:
                    reasons.append("CivitAI does not know its hash")
        if not candidates:
            candidates.extend(self._from_registry(ref))
        if not candidates and self.search:
            candidates.extend(self._search(ref, reasons))
        if not ref.url and not ref.hashes and not candidates:
            reasons.append("the workflow gives no URL or hash")
        return candidates, reasons

    def _from_url(self, ref: ModelReference) -> Candidate:
        from hubloader.sources.references import CIVITAI, HUGGINGFACE, parse_reference, parse_url

        if "://" in ref.url:
            try:
                parsed = parse_url(ref.url)
            except InvalidReference:
                return Candidate(ref.url, ref.file_name, "url", 0.8, f"the workflow names {redact_url(ref.url)}")
        else:  # an AIR or civitai:M@V names a file as well as a URL does
            parsed = parse_reference(ref.url)
            if parsed.kind not in (CIVITAI, HUGGINGFACE):
                raise InvalidReference(f"{ref.url!r} is neither a URL nor a CivitAI/HuggingFace reference.")
        if parsed.kind == CIVITAI:
            if parsed.version_id is None:
                meta = self.civitai.get_model_details(parsed.model_id)
            else:
                meta = self.civitai.get_model_version(parsed.version_id)
            digest = ""
            if parsed.file_id or parsed.download_params:  # an AIR's +fileId or ?type=…&fp=… names one file
                from hubloader.sources.civitai import pick_file

                files = meta.extra.get("civitai_files") or []
                named = pick_file(files, meta.type, file_id=parsed.file_id, params=dict(parsed.download_params))
                if named is None:
                    raise InvalidReference(f"CivitAI {meta.name!r} {meta.version!r} has no file {parsed.text} names.")
                digest = str((named.get("hashes") or {}).get("SHA256") or "").lower()
            return _from_metadata(meta, ref, f"the workflow names CivitAI {parsed.text}", 0.95, digest)
        return self._hf_candidate(parsed, ref, 0.95, f"the workflow names {parsed.repo_id}/{parsed.filename}")

    def _hf_candidate(self, parsed: Any, ref: ModelReference, confidence: float, evidence: str) -> Candidate:
        """A HuggingFace file, its size and SHA256 read from the hub (the LFS ETag) so the bytes are checked."""
        from hubloader.sources.references import hf_resolve_url

        url = hf_resolve_url(parsed, hf_endpoint())
        size, sha256 = _hf_file_metadata(url)
        return Candidate(url, parsed.filename.rsplit("/", 1)[-1], "huggingface", confidence, evidence, size, sha256)

    def _civitai_by_hashes(self, refs: list[ModelReference]) -> dict[str, ModelMetadata]:
        """One batched CivitAI lookup for every hash of every reference that has no URL."""
        return self._civitai_lookup([d for r in refs if not r.url for d in r.hashes.values()])

    def _civitai_lookup(self, digests: list[str]) -> dict[str, ModelMetadata]:
        digests = list(dict.fromkeys(d.lower() for d in digests if d))
        if not digests:
            return {}
        found: dict[str, ModelMetadata] = {}
        batch = getattr(self.civitai, "find_by_hashes", None)
        try:
            if batch is not None:
                answer = batch(digests)
                items = answer.items() if isinstance(answer, dict) else zip(digests, answer, strict=False)
                found = {d.lower(): m for d, m in items if m is not None}
            else:
                for digest in digests:
                    meta = _lookup(self.civitai, "find_by_hash", digest)
                    if meta is not None:
                        found[digest] = meta
        except HubloaderError:
            return found  # CivitAI unreachable: the other steps still run
        return found

    def sources_by_sha256(self, digests: list[str]) -> dict[str, Candidate]:
        """Where the files with these SHA256s come from: our registry's record of the download first (it knows
        HuggingFace files, which CivitAI does not), then one batched CivitAI lookup for the rest."""
        sources = self._registry_sources(digests)
        for digest, meta in self._civitai_lookup([d for d in digests if d.lower() not in sources]).items():
            try:
                sources[digest] = _from_metadata(meta, ModelReference(""), "CivitAI knows its SHA256", 0.95, digest)
            except HubloaderError:
                continue
        return sources

    def _registry_sources(self, digests: list[str]) -> dict[str, Candidate]:
        sources = {}
        for digest in dict.fromkeys(d.lower() for d in digests if d):
            meta = _lookup(self.registry, "find_model", digest)
            if meta is None or (not meta.remote_url and not meta.files):
                continue
            try:
                candidate = _from_metadata(
                    meta, ModelReference(""), f"our registry knows it ({meta.model_id})", 0.9, digest
                )
            except HubloaderError:
                continue
            if candidate.sha256 == digest and _names_a_file(candidate.url):
                sources[digest] = candidate
        return sources

    def _from_registry(self, ref: ModelReference) -> list[Candidate]:
        for key in (ref.file_name, os.path.splitext(ref.file_name)[0]):
            meta = _lookup(self.registry, "find_model", key)
            if meta is not None and (meta.remote_url or meta.files):
                return [_from_metadata(meta, ref, f"our registry knows {meta.name!r} ({meta.model_id})", 0.7)]
        return []

    def _search(self, ref: ModelReference, reasons: list[str]) -> list[Candidate]:
        """Search CivitAI and HuggingFace by file name; only an exact file-name match counts.

        A short hash the workflow gives (infotext's ``TI hashes`` are SHA256 prefixes CivitAI cannot look up)
        confirms a hit or rules it out; several different files under the name are ambiguous, not a pick.
        """
        stem = os.path.splitext(ref.file_name)[0]
        if not stem:
            return []
        model_type = _type_of_kind(ref.kind)
        found: list[Candidate] = []
        try:
            for query in _search_queries(stem):
                for meta in self.civitai.search_models(query=query, type=model_type, limit=10):
                    if any(_name_matches(ref.file_name, f.name) for f in meta.files) or (
                        not meta.files and _name_matches(stem, meta.name)
                    ):
                        evidence = f"CivitAI search for {query!r} found {meta.name!r}"
                        found.append(_from_metadata(meta, ref, evidence, 0.6))
                if found:
                    break
        except HubloaderError as exc:
            reasons.append(f"CivitAI search failed: {exc.message}")
        try:
            found.extend(self._search_hf(ref, stem))
        except HubloaderError as exc:
            reasons.append(f"HuggingFace search failed: {exc.message}")
        found = _weigh_by_short_hash(ref, found, reasons)
        if not found:
            reasons.append(f"no CivitAI or HuggingFace result has a file named {ref.file_name!r}")
        files = {c.sha256 or c.url for c in found}
        if len(files) > 1 and all(c.confidence < 0.9 for c in found):
            reasons.append(
                f"{len(files)} different files are named {ref.file_name!r} ("
                + "; ".join(c.evidence for c in found)
                + "): give the workflow entry a URL or hash to say which"
            )
            for candidate in found:
                candidate.confidence = min(candidate.confidence, 0.3)
        return found

    def _search_hf(self, ref: ModelReference, stem: str) -> list[Candidate]:
        from hubloader.sources.references import parse_hf_path

        found = []
        for meta in self.huggingface.search_models(stem, limit=5):
            for path in _hf_repo_files(meta.model_id):
                if _name_matches(ref.file_name, path.rsplit("/", 1)[-1]):
                    parsed = parse_hf_path(f"{meta.model_id}/{path}")
                    evidence = f"HuggingFace search for {stem!r} found {meta.model_id}/{path}"
                    found.append(self._hf_candidate(parsed, ref, 0.55, evidence))
                    break
        return found

    # -- fetching -------------------------------------------------------------------------------

    def fetch(
        self,
        report: ResolutionReport,
        *,
        progress: Callable[[ModelStatus, Any], None] | None = None,
        cancel: Any = None,
    ) -> ResolutionReport:
        """Download every RESOLVED item into its folder, a few at a time; update the items in place."""
        todo = report.by_status(Status.RESOLVED)
        if todo:
            with ThreadPoolExecutor(
                max_workers=min(self.max_workers, len(todo)), thread_name_prefix="hubloader-fetch"
            ) as pool:
                list(pool.map(lambda item: self._fetch_one(item, progress, cancel), todo))
        return report

    def _fetch_one(self, item: ModelStatus, progress: ProgressCallback | None, cancel: Any) -> None:
        candidate, ref = item.chosen, item.reference
        assert candidate is not None
        try:
            expected = _expected_sha256(ref, candidate)
            dest = self._destination(ref, candidate)
            result = _download(
                candidate,
                dest,
                expected,
                progress=(lambda p: progress(item, p)) if progress else None,
                cancel=cancel,
                shared_cache=self.shared_cache,
            )
            _check_short_hashes(ref, result.sha256, result.path)
        except HubloaderError as exc:
            item.status, item.reason = Status.FAILED, str(exc)
            return
        item.status, item.path, item.sha256, item.size_bytes = (
            Status.FETCHED,
            result.path,
            result.sha256,
            result.size_bytes,
        )
        item.use_as = _relative_to(result.path, self.folders.target(ref.kind or candidate.kind))

    def _destination(self, ref: ModelReference, candidate: Candidate) -> Path:
        """``<first folder of the kind>/<subfolders as in the workflow>/<safe file name>``."""
        kind = ref.kind or candidate.kind
        if not kind:
            raise HubloaderError(
                f"Cannot tell which folder {ref.name!r} belongs in.",
                hint="Download it by hand, or give the workflow entry a 'directory'.",
            )
        root = self.folders.target(kind)
        parts = [p for p in _norm(ref.name).split("/") if p not in ("", ".", "..")]
        name = parts[-1] if parts and _is_model_file(parts[-1]) else candidate.file_name
        subdirs = [safe_filename(p, default_ext="").rstrip(".") or "_" for p in parts[:-1]]
        return root.joinpath(*subdirs, safe_filename(name))

    def run(self, workflow: Any, *, download: bool = False, **fetch_options: Any) -> ResolutionReport:
        """check → resolve → (optionally) fetch, the whole flow the faces call."""
        report = self.resolve(workflow)
        return self.fetch(report, **fetch_options) if download else report


def resolve_workflow(
    workflow: Any, folders: ModelFolders | None = None, *, download: bool = False, **resolver_options: Any
) -> ResolutionReport:
    """One-call form: ``resolve_workflow("wf.json", standalone_folders(dir), download=True)``."""
    return Resolver(folders, **resolver_options).run(workflow, download=download)


# --- helpers ---------------------------------------------------------------------------------------


def _lookup(service: Any, method: str, key: str) -> Any:
    """``service.method(key)``, with "not found" (None, KeyError or NotFound) meaning None."""
    func = getattr(service, method, None)
    if func is None:
        return None
    try:
        return func(key)
    except (KeyError, LookupError, HubloaderError):
        return None


def _hash_agrees(meta: Any, ref: ModelReference) -> bool:
    sha = (getattr(meta, "sha256", "") or "").lower()
    known = {k: v.lower() for k, v in (getattr(meta, "hashes", {}) or {}).items()}
    for name, digest in ref.hashes.items():
        if name in known and known[name] == digest:
            return True
        if name in ("SHA256", "AutoV2") and sha and sha.startswith(digest):
            return True
    return False


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _relative_to(path: Path, root: Path) -> str:
    return os.path.relpath(path.resolve(), root.resolve())


def _type_of_kind(kind: str) -> ModelType | None:
    return next((t for t, k in KIND_BY_TYPE.items() if k == kind and t is not ModelType.LYCORIS), None)


def _kind_of_type(model_type: ModelType | None) -> str:
    return KIND_BY_TYPE.get(model_type, "") if model_type not in (None, ModelType.OTHER) else ""


def _from_metadata(
    meta: ModelMetadata, ref: ModelReference, evidence: str, confidence: float, digest: str = ""
) -> Candidate:
    """The file of a CivitAI/registry model version that the reference means (by hash, then name, then primary)."""
    files = list(meta.files)
    chosen = None
    if digest:
        chosen = next((f for f in files if digest in {h.lower() for h in [f.sha256, *f.hashes.values()] if h}), None)
    chosen = chosen or next((f for f in files if _name_matches(ref.file_name, f.name)), None)
    chosen = chosen or next((f for f in files if f.primary), None) or (files[0] if files else None)
    if chosen is None:
        if not meta.remote_url:
            raise InvalidReference(f"{meta.name!r} ({meta.model_id}) has no downloadable file.")
        return Candidate(
            meta.remote_url, ref.file_name, meta.source.value, confidence, evidence, meta.size_bytes,
            meta.sha256.lower(), meta.air, _kind_of_type(meta.type),
        )  # fmt: skip
    sha = (chosen.sha256 or chosen.hashes.get("SHA256", "")).lower()
    return Candidate(
        chosen.url or meta.remote_url, chosen.name, meta.source.value, confidence, evidence, chosen.size_bytes,
        sha, meta.air, _kind_of_type(meta.type),
    )  # fmt: skip


def _search_queries(stem: str) -> list[str]:
    """The file stem, then its words before a version tag: CivitAI names files ``modelName_versionName``
    (``juggernautXL_v9Rundiffusion`` → "juggernaut XL") and its search matches model names, not file names."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])|[\s_.-]+", " ", stem).split()
    version = re.compile(r"v\d.*|fp\d+|bf16|pruned|ema(only)?", re.IGNORECASE)
    head = list(itertools.takewhile(lambda w: not version.fullmatch(w), words))
    query = " ".join(head or words)
    return [stem] if query.lower() == stem.lower() else [stem, query]


def _weigh_by_short_hash(ref: ModelReference, found: list[Candidate], reasons: list[str]) -> list[Candidate]:
    """A name match whose SHA256 starts with the workflow's SHA256 (or AutoV2, its prefix) is that file: confidence
    rises; one whose SHA256 does not is another file: dropped, with the reason."""
    prefixes = {name: digest for name, digest in ref.hashes.items() if name in ("SHA256", "AutoV2")}
    if not prefixes:
        return found
    kept = []
    for candidate in found:
        if not candidate.sha256:
            kept.append(candidate)
            continue
        wrong = [f"{name} {digest}" for name, digest in prefixes.items() if not candidate.sha256.startswith(digest)]
        if wrong:
            reasons.append(f"{candidate.evidence}, but its SHA256 {candidate.sha256[:12]}… is not the {wrong[0]} given")
            continue
        given = ", ".join(f"{name} {digest}" for name, digest in prefixes.items())
        candidate.confidence, candidate.evidence = 0.9, f"{candidate.evidence}, and its SHA256 agrees with {given}"
        kept.append(candidate)
    return kept


def _names_a_file(url: str) -> bool:
    """A URL that downloads one file: not a HuggingFace repository page (what a cached repo's record keeps)."""
    from hubloader.sources.references import HUGGINGFACE, parse_url

    if not url:
        return False
    try:
        parsed = parse_url(url)
    except InvalidReference:
        return True  # a plain download URL
    return parsed.kind != HUGGINGFACE or bool(parsed.filename)


def _hf_file_metadata(url: str) -> tuple[int, str]:
    """(size, sha256 or "") of a HuggingFace file; the LFS ETag is the file's SHA256."""
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    token = hf_token()
    try:
        meta = get_hf_file_metadata(url, token=token.reveal() if token else False)
    except (EntryNotFoundError, RepositoryNotFoundError) as exc:
        raise InvalidReference(f"{redact_url(url)} does not exist on the hub ({type(exc).__name__}).") from None
    except HfHubHTTPError as exc:
        raise InvalidReference(
            f"{redact_url(url)} could not be read ({exc.response.status_code if exc.response is not None else exc})."
        ) from None
    except OSError as exc:
        from hubloader.core.errors import NetworkError

        raise NetworkError(f"HuggingFace did not answer for {redact_url(url)} ({type(exc).__name__}).") from None
    etag = (meta.etag or "").strip('"').lower()
    return int(meta.size or 0), etag if len(etag) == 64 and _HEX.match(etag) else ""


def _hf_repo_files(repo_id: str) -> list[str]:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    token = hf_token()
    try:
        info = HfApi(endpoint=hf_endpoint(), token=token.reveal() if token else False).model_info(repo_id)
    except (HfHubHTTPError, OSError):
        return []
    return [s.rfilename for s in info.siblings or []]


def _expected_sha256(ref: ModelReference, candidate: Candidate) -> str:
    """The SHA256 the bytes must have; a workflow and a source that disagree stop the download."""
    source, wanted = candidate.sha256.lower(), ref.sha256.lower()
    if source and wanted and source != wanted:
        raise IntegrityError(
            f"{ref.name}: the workflow says SHA256 {wanted[:12]}…, the source's file is {source[:12]}…; not downloaded.",
            expected=wanted,
            actual=source,
            hint="The source file changed or the workflow points at another version; check it by hand.",
        )
    return wanted or source


def _download(
    candidate: Candidate,
    dest: Path,
    expected_sha256: str,
    *,
    progress: Any = None,
    cancel: Any = None,
    shared_cache: Any = None,
) -> Any:
    """The resolved file, through the gate (host, destination, trust, shared cache, engine)."""
    from hubloader.gate.fetch import fetch_file
    from hubloader.gate.request import FileRequest

    service = candidate.source if candidate.source in ("civitai", "huggingface") else "url"
    request = FileRequest(
        url=candidate.url,
        folder=dest.parent,
        name=dest.name,
        sha256=expected_sha256.lower(),
        size=candidate.size_bytes or None,
        token_service=service if service != "url" else None,
        source=service,
        record={"source": candidate.source, "url": canonical_url(candidate.url), "air": candidate.air},
    )
    return fetch_file(request, progress=progress, cancel=cancel, shared_cache=shared_cache)


def _check_short_hashes(ref: ModelReference, sha256: str, path: Path) -> None:
    """A workflow may give only an AutoV2 (SHA256 prefix) or a short SHA256: check it after the fact."""
    for name, digest in ref.hashes.items():
        if name in ("SHA256", "AutoV2") and len(digest) < 64 and not sha256.lower().startswith(digest):
            path.unlink(missing_ok=True)
            raise IntegrityError(
                f"{ref.name}: the downloaded file's SHA256 {sha256[:12]}… does not start with the workflow's "
                f"{name} {digest}; it was deleted.",
                expected=digest,
                actual=sha256,
            )


def canonical_url(url: str) -> str:
    """The URL a lockfile keeps: public hosts instead of the configured endpoints, and a HuggingFace file as
    the ``/resolve/`` link the resolver fetches (its ``/blob/`` web page would 404 on another machine)."""
    from hubloader.sources.references import HUGGINGFACE, hf_resolve_url, parse_url

    try:
        parsed = parse_url(url)
    except InvalidReference:
        parsed = None
    if parsed is not None and parsed.kind == HUGGINGFACE and parsed.filename:
        return hf_resolve_url(parsed, DEFAULT_HF_ENDPOINT)
    for endpoint, public in ((hf_endpoint(), DEFAULT_HF_ENDPOINT), (civitai_endpoint(), DEFAULT_CIVITAI_ENDPOINT)):
        if endpoint != public and url.startswith(endpoint + "/"):
            return public + url[len(endpoint) :]
    return url


def endpoint_url(url: str) -> str:
    """The inverse of :func:`canonical_url`: public hosts rewritten to the configured endpoints (mirrors)."""
    for endpoint, public in ((hf_endpoint(), DEFAULT_HF_ENDPOINT), (civitai_endpoint(), DEFAULT_CIVITAI_ENDPOINT)):
        if endpoint != public and url.startswith(public + "/"):
            return endpoint + url[len(public) :]
    return url


def references_to_json(refs: Iterable[ModelReference]) -> list[dict[str, Any]]:
    return [ref.to_dict() for ref in refs]
