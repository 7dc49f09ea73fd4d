"""Finding the models a workflow names: known loader inputs mapped to their folder kind, any widget value
ending in a model extension, ``properties.models`` and top-level ``models`` entries (name, url, directory,
hash), and the models of A1111 infotext. Muted and bypassed nodes are skipped.

Folder kinds are ComfyUI's names ("checkpoints", "loras", …), as in :mod:`hubloader.core.folders`.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from hubloader.core.folders import KIND_BY_INPUT, LEGACY_KINDS
from hubloader.core.metadata import MODEL_EXTENSIONS
from hubloader.sources.references import HASH_NAMES
from hubloader.workflows.infotext import hash_label, infotext_models, parse_infotext
from hubloader.workflows.reading import Workflow, read_workflow

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


# --- finding references ------------------------------------------------------------------------


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
        key = (ref.kind, norm_name(ref.name))
        existing = self._refs.get(key)
        if existing is None and ref.kind:
            # A kind-less sighting of the same name (e.g. a top-level models entry) takes this kind.
            existing = self._refs.pop(("", norm_name(ref.name)), None)
            if existing is not None:
                existing.kind = ref.kind
                self._refs[key] = existing
        if existing is None and not ref.kind:
            existing = next((r for (k, n), r in self._refs.items() if n == norm_name(ref.name)), None)
        if existing is None:
            self._refs[key] = ref
            return
        existing.url = existing.url or ref.url
        for name, digest in ref.hashes.items():
            existing.hashes.setdefault(name, digest)
        existing.uses.extend(ref.uses)

    def references(self) -> list[ModelReference]:
        return list(self._refs.values())


def norm_name(name: str) -> str:
    """A name as written, "/"-separated: workflows saved on Windows use backslashes."""
    return name.replace("\\", "/").strip()


def is_model_file(value: Any) -> bool:
    """A string ending in a model file extension (a widget's other values are options, not files)."""
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
    """The name of a ``models`` entry's hash: its ``hash_type`` when it gives a known one, else by length."""
    return HASH_NAMES.get(hash_type.lower()) or hash_label(digest)


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
    by_name = {norm_name(e[0]): e for e in entries}
    by_file = {norm_name(e[0]).rsplit("/", 1)[-1]: e for e in entries}
    widgets = LOADER_WIDGETS.get(node_type)
    items: list[tuple[str, int | None, Any]]
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
        if not is_model_file(value):
            continue
        kind = (loader_kinds.get(input_name) or KIND_BY_INPUT.get(input_name)) if input_name else None
        name = value.strip()
        entry = by_name.get(norm_name(name)) or by_file.get(norm_name(name).rsplit("/", 1)[-1])
        url, directory, hashes = (entry[1], entry[2], entry[3]) if entry else ("", "", {})
        kind = kind or directory or _kind_from_type(node_type)
        origin = "loader" if input_name in loader_kinds or input_name in KIND_BY_INPUT else "widget"
        use = NodeUse(node_id, node_type, input_name, index, subgraph)
        found.add(ModelReference(name, kind, url, dict(hashes), [use], origin))


def _scan_api(prompt: dict[str, Any], found: _Collector) -> None:
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or node.get("mode") in MUTED_MODES:
            continue
        node_type = str(node.get("class_type") or "")
        loader_kinds = dict(LOADER_WIDGETS.get(node_type, ()))
        for input_name, value in (node.get("inputs") or {}).items():
            if not is_model_file(value):
                continue  # links ([node_id, slot]), numbers, options
            kind = loader_kinds.get(input_name) or KIND_BY_INPUT.get(input_name)
            origin = "loader" if kind else "widget"
            kind = kind or _kind_from_type(node_type)
            found.add(
                ModelReference(value.strip(), kind, uses=[NodeUse(str(node_id), node_type, input_name)], origin=origin)
            )


def _scan_infotext(text: str, found: _Collector) -> None:
    for model in infotext_models(parse_infotext(text)):
        if model.name or model.hashes:
            found.add(ModelReference(model.name, model.kind, hashes=dict(model.hashes), origin="infotext"))


def name_matches(ref_name: str, file_name: str) -> bool:
    """Same file name; a name without a model extension (A1111's ``Model: foo``) matches any extension."""
    if ref_name == file_name:
        return True
    return not is_model_file(ref_name) and is_model_file(file_name) and os.path.splitext(file_name)[0] == ref_name
