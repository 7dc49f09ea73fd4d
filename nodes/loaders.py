"""Loader nodes (ComfyUI V1 API) that fetch what they name, then load it with ComfyUI's own functions.

Each loader has the usual combo of local files plus a ``source`` string: a HuggingFace
``owner/repo/file``, a HuggingFace or CivitAI URL, ``civitai:MODEL@VERSION`` or an AIR. A combo value
that is not on disk (a shared workflow) is fetched from the URL the workflow's ``properties.models``
gives for it. ComfyUI modules (``comfy.*``, ``folder_paths``) are imported inside execution only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from hubloader.core.errors import Cancelled, HubloaderError, InvalidReference
from hubloader.faces.advice import COMFYUI, advice

from . import fetch, folders

CATEGORY = "loaders/hubloader"
SOURCE_TOOLTIP = (
    "Optional: a model to fetch instead of the local choice — HuggingFace owner/repo/file.safetensors, "
    "a huggingface.co or civitai.com URL, civitai:MODEL@VERSION, or an AIR (urn:air:…). "
    "Downloaded once into ComfyUI's models folder, then loaded from there."
)
HIDDEN = {"unique_id": "UNIQUE_ID", "extra_pnginfo": "EXTRA_PNGINFO"}


class MissingModel(HubloaderError):
    hint = "Fill in 'source' with where to get it, or find it in the Model Hub sidebar."


def _combo(kind: str, tooltip: str) -> tuple[list[str], dict[str, Any]]:
    return (_choices(kind), {"tooltip": tooltip})


#: Appended to a combo choice whose file failed inspection when the folders were scanned (a hostile, truncated
#: or non-JSON header): it stays listed, so the user sees it is there but unusable, and cannot be run.
UNUSABLE = " (unusable: failed inspection)"


def _choices(kind: str) -> list[str]:
    """ComfyUI's names for ``kind``, each file the registry recorded as failing inspection marked ``UNUSABLE``."""
    names = folders.list_names(kind)
    bad = _unusable_names(kind, set(names))
    return [name + UNUSABLE if name in bad else name for name in names] if bad else names


def _unusable_names(kind: str, names: set[str]) -> set[str]:
    """The combo names of the files the registry recorded as unusable; nothing when there is no index yet
    (building a node list never creates one) or it cannot be read."""
    try:
        import sqlite3

        from hubloader.registry import ModelRegistry, default_db_path

        if not default_db_path().exists():
            return set()
        with ModelRegistry() as registry:
            paths = registry.unusable_files()
    except (ImportError, HubloaderError, OSError, sqlite3.Error):
        return set()
    roots = [Path(folder).resolve() for folder in folders.folder_paths().get_folder_paths(kind)]
    relative = {
        Path(path).resolve().relative_to(root).as_posix()
        for path in paths
        for root in roots
        if Path(path).resolve().is_relative_to(root)
    }
    return {name for name in names if name.replace("\\", "/") in relative}


def _source_input() -> tuple[str, dict[str, Any]]:
    return (
        "STRING",
        {
            "default": "",
            "multiline": False,
            "placeholder": "owner/repo/file, URL, civitai:ID@VER or AIR",
            "tooltip": SOURCE_TOOLTIP,
        },
    )


def validate(name: str, source: str, input_name: str) -> bool | str:
    """VALIDATE_INPUTS for every loader: any sane name (present or not) passes; a bad reference does not."""
    if str(source or "").strip():
        try:
            fetch.check_reference(source)
        except InvalidReference as exc:
            return f"source: {exc}"
        return True
    if str(name).endswith(UNUSABLE):
        return f"{input_name}: {name} failed inspection when the folders were scanned, so it cannot be loaded."
    problem = folders.check_name(name)
    return f"{input_name}: {problem}" if problem else True


def identity(kind: str, name: str, source: str) -> str:
    """IS_CHANGED: a reference names fixed bytes; a local name is its file's path, size and mtime."""
    text = str(source or "").strip()
    if text:
        try:
            return f"ref:{fetch.check_reference(text)}"
        except InvalidReference:
            return f"invalid:{text}"
    return f"{name}|{folders.identity(folders.full_path(kind, name))}"


def workflow_url(extra_pnginfo: Any, unique_id: Any, name: str) -> str:
    """The URL the workflow's ``properties.models`` (or top-level ``models``) gives for ``name``."""
    workflow = (extra_pnginfo or {}).get("workflow") if isinstance(extra_pnginfo, dict) else None
    if not isinstance(workflow, dict):
        return ""
    exact = str(name).replace("\\", "/")
    entries: list[Any] = []
    for node in _all_nodes(workflow):
        if str(node.get("id")) == str(unique_id).rsplit(":", 1)[-1]:
            entries.extend((node.get("properties") or {}).get("models") or [])
    entries.extend(workflow.get("models") or [])
    named = [(str(e.get("name", "")).replace("\\", "/"), e) for e in entries if isinstance(e, dict)]
    # The placed name first: same-named files of other sources sit apart (owner__repo/style-0.safetensors).
    for matches in (lambda n: n == exact, lambda n: Path(n).name == Path(exact).name):
        for entry_name, entry in named:
            if matches(entry_name):
                return str(entry.get("url") or "")
    return ""


def _all_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [n for n in workflow.get("nodes") or [] if isinstance(n, dict)]
    for graph in (workflow.get("definitions") or {}).get("subgraphs") or []:
        nodes.extend(n for n in graph.get("nodes") or [] if isinstance(n, dict))
    return nodes


class ComfyProgress:
    """ComfyUI's progress bar on the node, and its Cancel button turned into our cancel event."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        import comfy.model_management
        import comfy.utils

        if comfy.model_management.processing_interrupted():
            self.cancel.set()
            return
        if total > 0:
            if self._bar is None:
                self._bar = comfy.utils.ProgressBar(total)
            try:
                self._bar.update_absolute(min(done, total), total)
            except comfy.model_management.InterruptProcessingException:
                self.cancel.set()


def ensure_local(kind: str, name: str, source: str, unique_id: Any = None, extra_pnginfo: Any = None) -> fetch.Fetched:
    """The file to load: fetched from ``source``, else the local ``name``, else the workflow's URL for it."""
    progress = ComfyProgress()
    reference = str(source or "").strip()
    filename = None
    if not reference:
        path = folders.full_path(kind, name)
        if path is not None:
            return fetch.Fetched(path, kind, name)
        reference = workflow_url(extra_pnginfo, unique_id, name)
        filename = str(name).replace("\\", "/")  # fetched to that very name, subfolder included, to load as named
        if not reference:
            raise MissingModel(f"{name!r} is not in ComfyUI's {kind} folder and the workflow says nowhere to get it.")
    try:
        return fetch.fetch(reference, kind, filename=filename, progress=progress, cancel=progress.cancel)
    except Cancelled:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()
        raise
    except HubloaderError as exc:
        _advise(exc)
        raise


def _advise(exc: HubloaderError) -> None:
    """Append the sidebar's advice to the error ComfyUI shows under the node (the type stays, for callers)."""
    extra = advice(exc, COMFYUI)
    if extra:
        exc.hint = f"{exc.hint} {extra}".strip()
        exc.args = (str(exc),)


class _HubLoader:
    """Shared contract: one combo of ``KIND`` files named ``NAME``, a ``source`` string, hidden workflow info.

    Each subclass declares ``VALIDATE_INPUTS`` naming its combo: ComfyUI then skips its "value not in
    list" check for exactly that input (a ``**kwargs`` signature would switch off every check)."""

    KIND = ""
    NAME = ""
    CATEGORY = CATEGORY
    SEARCH_ALIASES = ["hub", "download", "huggingface", "civitai"]

    @classmethod
    def model_inputs(cls) -> dict[str, Any]:
        return {
            cls.NAME: _combo(cls.KIND, f"A file in ComfyUI's {cls.KIND} folder (or one to fetch)."),
            "source": _source_input(),
        }

    @classmethod
    def IS_CHANGED(cls, source: str = "", **inputs: Any) -> str:
        return identity(cls.KIND, inputs.get(cls.NAME, ""), source)

    def fetch_model(self, inputs: dict[str, Any]) -> fetch.Fetched:
        return ensure_local(
            self.KIND, inputs[self.NAME], inputs.get("source", ""), inputs.get("unique_id"), inputs.get("extra_pnginfo")
        )


def _weight(auto: bool, manual: float, recommended: float | None) -> float:
    return recommended if auto and recommended is not None else manual


def _join_prompt(triggers: list[str], prompt: str, prepend: bool) -> str:
    if not prepend or not triggers:
        return prompt
    return ", ".join([*triggers, prompt]) if prompt.strip() else ", ".join(triggers)


def _load_lora_file(path: Path) -> Any:
    import comfy.utils

    return comfy.utils.load_torch_file(str(path), safe_load=True)


class HubCheckpointLoader(_HubLoader):
    KIND, NAME = "checkpoints", "ckpt_name"
    DESCRIPTION = "Loads a checkpoint, fetching it from HuggingFace or CivitAI first when it is not on disk."
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The diffusion model.", "The text encoder.", "The VAE.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": cls.model_inputs(), "hidden": dict(HIDDEN)}

    @classmethod
    def VALIDATE_INPUTS(cls, ckpt_name: str, source: str = "") -> bool | str:
        return validate(ckpt_name, source, "ckpt_name")

    def load(self, ckpt_name: str, source: str = "", **hidden: Any) -> tuple[Any, ...]:
        import comfy.sd

        model = self.fetch_model({"ckpt_name": ckpt_name, "source": source, **hidden})
        out = comfy.sd.load_checkpoint_guess_config(
            str(model.path),
            output_vae=True,
            output_clip=True,
            embedding_directory=folders.folder_paths().get_folder_paths("embeddings"),
        )
        return tuple(out[:3])


class HubLoraLoader(_HubLoader):
    KIND, NAME = "loras", "lora_name"
    DESCRIPTION = (
        "Applies a LoRA, fetching it first when needed. With 'auto' strength the model's recommended weight is "
        "used; its trigger words come out as text and can be put in front of a connected prompt."
    )
    RETURN_TYPES = ("MODEL", "CLIP", "STRING", "STRING")
    RETURN_NAMES = ("MODEL", "CLIP", "trigger_words", "prompt")
    OUTPUT_TOOLTIPS = (
        "The model with the LoRA applied.",
        "The text encoder with the LoRA applied.",
        "The LoRA's trigger words, comma separated.",
        "The connected prompt, with the trigger words in front when 'prepend_triggers' is on.",
    )
    FUNCTION = "load_lora"

    def __init__(self) -> None:
        self.loaded: tuple[str, Any] | None = None  # (path, state dict), as core's LoraLoader caches it

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                **cls.model_inputs(),
                "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}),
                "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}),
                "auto_strength": (
                    "BOOLEAN",
                    {"default": True, "label_on": "auto", "label_off": "manual", "tooltip": AUTO_TOOLTIP},
                ),
                "prepend_triggers": ("BOOLEAN", {"default": False, "tooltip": PREPEND_TOOLTIP}),
            },
            "optional": {
                "model": (
                    "MODEL",
                    {"tooltip": "The diffusion model the LoRA is applied to (unconnected: fetch only)."},
                ),
                "clip": ("CLIP", {"tooltip": "The text encoder the LoRA is applied to."}),
                "prompt": ("STRING", {"forceInput": True, "tooltip": "A prompt to put the trigger words in front of."}),
            },
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name: str, source: str = "") -> bool | str:
        return validate(lora_name, source, "lora_name")

    def apply(
        self, model: Any, clip: Any, inputs: dict[str, Any], strength_model: float, strength_clip: float, auto: bool
    ) -> tuple[Any, Any, list[str]]:
        import comfy.sd

        fetched = self.fetch_model(inputs)
        words, recommended = (
            fetch.describe(fetched.path)
            if not fetched.trigger_words
            else (fetched.trigger_words, fetched.recommended_weight)
        )
        strength_model = _weight(auto, strength_model, recommended)
        strength_clip = _weight(auto, strength_clip, recommended) if clip is not None else 0.0
        if model is None and clip is None or strength_model == 0 and strength_clip == 0:
            return model, clip, words
        if self.loaded is None or self.loaded[0] != str(fetched.path):
            self.loaded = (str(fetched.path), _load_lora_file(fetched.path))
        new_model, new_clip = comfy.sd.load_lora_for_models(model, clip, self.loaded[1], strength_model, strength_clip)
        return new_model, new_clip, words

    def load_lora(
        self,
        lora_name: str,
        model: Any = None,
        clip: Any = None,
        source: str = "",
        strength_model: float = 1.0,
        strength_clip: float = 1.0,
        auto_strength: bool = True,
        prepend_triggers: bool = False,
        prompt: str = "",
        **hidden: Any,
    ) -> tuple[Any, ...]:
        inputs = {"lora_name": lora_name, "source": source, **hidden}
        new_model, new_clip, words = self.apply(model, clip, inputs, strength_model, strength_clip, auto_strength)
        return new_model, new_clip, ", ".join(words), _join_prompt(words, prompt or "", prepend_triggers)


AUTO_TOOLTIP = "auto: use the LoRA's recommended weight when its source gives one (else the strengths set here)."
PREPEND_TOOLTIP = "Put the trigger words in front of the connected prompt (the 'prompt' output)."


class HubLoraLoaderModelOnly(HubLoraLoader):
    DESCRIPTION = "Applies a LoRA to the diffusion model only, fetching it first when needed."
    RETURN_TYPES = ("MODEL", "STRING", "STRING")
    RETURN_NAMES = ("MODEL", "trigger_words", "prompt")
    OUTPUT_TOOLTIPS = (
        "The model with the LoRA applied.",
        "The LoRA's trigger words, comma separated.",
        "The connected prompt, with the trigger words in front when 'prepend_triggers' is on.",
    )
    FUNCTION = "load_lora_model_only"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        types = super().INPUT_TYPES()
        del types["required"]["strength_clip"]
        del types["optional"]["clip"]
        return types

    def load_lora_model_only(
        self,
        lora_name: str,
        model: Any = None,
        source: str = "",
        strength_model: float = 1.0,
        auto_strength: bool = True,
        prepend_triggers: bool = False,
        prompt: str = "",
        **hidden: Any,
    ) -> tuple[Any, ...]:
        inputs = {"lora_name": lora_name, "source": source, **hidden}
        new_model, _, words = self.apply(model, None, inputs, strength_model, 0.0, auto_strength)
        return new_model, ", ".join(words), _join_prompt(words, prompt or "", prepend_triggers)


class HubVAELoader(_HubLoader):
    KIND, NAME = "vae", "vae_name"
    DESCRIPTION = "Loads a VAE, fetching it first when it is not on disk."
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": cls.model_inputs(), "hidden": dict(HIDDEN)}

    @classmethod
    def VALIDATE_INPUTS(cls, vae_name: str, source: str = "") -> bool | str:
        return validate(vae_name, source, "vae_name")

    def load_vae(self, vae_name: str, source: str = "", **hidden: Any) -> tuple[Any]:
        import comfy.sd
        import comfy.utils

        fetched = self.fetch_model({"vae_name": vae_name, "source": source, **hidden})
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(fetched.path)))
        if hasattr(vae, "throw_exception_if_invalid"):
            vae.throw_exception_if_invalid()
        return (vae,)


class HubControlNetLoader(_HubLoader):
    KIND, NAME = "controlnet", "control_net_name"
    DESCRIPTION = "Loads a ControlNet, fetching it first when it is not on disk."
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": cls.model_inputs(), "hidden": dict(HIDDEN)}

    @classmethod
    def VALIDATE_INPUTS(cls, control_net_name: str, source: str = "") -> bool | str:
        return validate(control_net_name, source, "control_net_name")

    def load_controlnet(self, control_net_name: str, source: str = "", **hidden: Any) -> tuple[Any]:
        import comfy.controlnet

        fetched = self.fetch_model({"control_net_name": control_net_name, "source": source, **hidden})
        controlnet = comfy.controlnet.load_controlnet(str(fetched.path))
        if controlnet is None:
            raise HubloaderError(
                f"{fetched.name} is not a ControlNet ComfyUI can load.", hint="Check the file's type on its page."
            )
        return (controlnet,)


class HubUpscaleModelLoader(_HubLoader):
    KIND, NAME = "upscale_models", "model_name"
    DESCRIPTION = "Loads an upscale model (ESRGAN and friends, through spandrel), fetching it first when needed."
    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": cls.model_inputs(), "hidden": dict(HIDDEN)}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name: str, source: str = "") -> bool | str:
        return validate(model_name, source, "model_name")

    def load_model(self, model_name: str, source: str = "", **hidden: Any) -> tuple[Any]:
        import comfy.utils
        from spandrel import ImageModelDescriptor, ModelLoader

        fetched = self.fetch_model({"model_name": model_name, "source": source, **hidden})
        sd = comfy.utils.load_torch_file(str(fetched.path), safe_load=True)
        if "module.layers.0.residual_group.blocks.0.norm1.weight" in sd:  # as core's UpscaleModelLoader
            sd = comfy.utils.state_dict_prefix_replace(sd, {"module.": ""})
        model = ModelLoader().load_from_state_dict(sd).eval()
        if not isinstance(model, ImageModelDescriptor):
            raise HubloaderError(f"{fetched.name} is not a single-image upscale model.", hint="Pick an upscaler.")
        return (model,)


class HubEmbedding(_HubLoader):
    """Embeddings are used by name inside the prompt (``embedding:name``): fetch, then say how to write it."""

    KIND, NAME = "embeddings", "embedding_name"
    DESCRIPTION = "Fetches a textual-inversion embedding when needed and writes 'embedding:<name>' for the prompt."
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("embedding", "prompt")
    OUTPUT_TOOLTIPS = (
        "'embedding:<name>' (with its weight when not 1).",
        "The connected prompt with the embedding in front.",
    )
    FUNCTION = "embed"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                **cls.model_inputs(),
                "weight": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.05}),
            },
            "optional": {"prompt": ("STRING", {"forceInput": True})},
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, embedding_name: str, source: str = "") -> bool | str:
        return validate(embedding_name, source, "embedding_name")

    def embed(
        self, embedding_name: str, source: str = "", weight: float = 1.0, prompt: str = "", **hidden: Any
    ) -> tuple[str, str]:
        fetched = self.fetch_model({"embedding_name": embedding_name, "source": source, **hidden})
        token = f"embedding:{Path(fetched.name).with_suffix('').as_posix()}"
        if weight != 1.0:
            token = f"({token}:{weight:g})"
        return token, _join_prompt([token], prompt or "", True)


class HubTriggerWords:
    """Trigger words and recommended weight of a local LoRA (from its source, the registry or its header)."""

    CATEGORY = CATEGORY
    DESCRIPTION = "Reads a LoRA's trigger words and recommended weight; optionally puts the words in front of a prompt."
    RETURN_TYPES = ("STRING", "FLOAT", "STRING")
    RETURN_NAMES = ("trigger_words", "recommended_weight", "prompt")
    FUNCTION = "read"
    SEARCH_ALIASES = ["trigger words", "activation text", "lora triggers"]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"lora_name": _combo("loras", "A LoRA in ComfyUI's loras folder.")},
            "optional": {"prompt": ("STRING", {"forceInput": True})},
        }

    @classmethod
    def IS_CHANGED(cls, lora_name: str = "", **_: Any) -> str:
        return identity("loras", lora_name, "")

    def read(self, lora_name: str, prompt: str = "") -> tuple[str, float, str]:
        path = folders.full_path("loras", lora_name)
        if path is None:
            raise MissingModel(f"{lora_name!r} is not in ComfyUI's loras folder.")
        words, weight = fetch.describe(path)
        return ", ".join(words), float(weight if weight is not None else 1.0), _join_prompt(words, prompt or "", True)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "HubloaderCheckpointLoader": HubCheckpointLoader,
    "HubloaderLoraLoader": HubLoraLoader,
    "HubloaderLoraLoaderModelOnly": HubLoraLoaderModelOnly,
    "HubloaderVAELoader": HubVAELoader,
    "HubloaderControlNetLoader": HubControlNetLoader,
    "HubloaderUpscaleModelLoader": HubUpscaleModelLoader,
    "HubloaderEmbedding": HubEmbedding,
    "HubloaderTriggerWords": HubTriggerWords,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "HubloaderCheckpointLoader": "Hub Checkpoint Loader",
    "HubloaderLoraLoader": "Hub LoRA Loader",
    "HubloaderLoraLoaderModelOnly": "Hub LoRA Loader (model only)",
    "HubloaderVAELoader": "Hub VAE Loader",
    "HubloaderControlNetLoader": "Hub ControlNet Loader",
    "HubloaderUpscaleModelLoader": "Hub Upscale Model Loader",
    "HubloaderEmbedding": "Hub Embedding",
    "HubloaderTriggerWords": "Trigger Words (Hubloader)",
}
#: node id → (folder kind, combo input): what the page needs to badge nodes and write properties.models.
MODEL_INPUTS: dict[str, tuple[str, str]] = {
    node_id: (cls.KIND, cls.NAME) for node_id, cls in NODE_CLASS_MAPPINGS.items() if issubclass(cls, _HubLoader)
}
MODEL_INPUTS["HubloaderTriggerWords"] = ("loras", "lora_name")
