"""What a model file is and what it was made for, from its tensor names and shapes, refined by metadata.

Kind and base detection follows InvokeAI's model probe: one small recogniser class per kind,
tried in order, each saying in its docstring how it recognises itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hubloader.core.metadata import BaseModel, ModelType
from hubloader.library.safetensors_header import SafetensorsHeader, Shape

# --- detection ----------------------------------------------------------------------------------


@dataclass
class Detection:
    """What a file is and what it was made for, with the tensor evidence that decided it."""

    kind: ModelType = ModelType.OTHER
    base: BaseModel = BaseModel.UNKNOWN
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # variant, algo, rank, latent_channels, encoder …


class Tensors:
    """Names → shapes (shape None when unknown, e.g. from a pickle) with the lookups recognisers need."""

    def __init__(self, shapes: Mapping[str, Shape | None]) -> None:
        self.shapes = dict(shapes)
        self.names = list(self.shapes)

    @classmethod
    def from_header(cls, header: SafetensorsHeader) -> Tensors:
        return cls(header.shapes)

    def __contains__(self, name: str) -> bool:
        return name in self.shapes

    def __len__(self) -> int:
        return len(self.names)

    def startswith(self, *prefixes: str) -> bool:
        return any(n.startswith(prefixes) for n in self.names)

    def endswith(self, *suffixes: str) -> bool:
        return any(n.endswith(suffixes) for n in self.names)

    def contains(self, *needles: str) -> bool:
        return any(needle in n for n in self.names for needle in needles)

    def with_prefix(self, prefix: str) -> list[str]:
        return [n for n in self.names if n.startswith(prefix)]

    def dim(self, name: str | None, axis: int) -> int | None:
        shape = self.shapes.get(name) if name else None
        try:
            return shape[axis] if shape is not None else None
        except IndexError:
            return None

    def first(self, *, prefix: str = "", suffix: str = "", contains: str = "") -> str | None:
        for n in self.names:
            if n.startswith(prefix) and n.endswith(suffix) and contains in n:
                return n
        return None


class Recogniser:
    """One kind of model file. ``recognise`` returns a Detection when the tensors fit, else None."""

    kind: ModelType = ModelType.OTHER

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        raise NotImplementedError


_CONTEXT_DIM_BASE = {768: BaseModel.SD15, 1024: BaseModel.SD2, 2048: BaseModel.SDXL, 1280: BaseModel.SDXL}
_EMBEDDING_DIM_BASE = {768: BaseModel.SD15, 1024: BaseModel.SD2}
EMBEDDING_KEYS = ("emb_params", "clip_l", "clip_g", "string_to_param", "string_to_token", "name", "step")


class EmbeddingRecogniser(Recogniser):
    """Textual inversion: at most a handful of tensors named ``emb_params`` (safetensors SD1/SD2),
    ``clip_l`` + ``clip_g`` (SDXL) or A1111's ``string_to_param.*``. Vector width decides the base:
    768 → SD1, 1024 → SD2; ``clip_g`` present → SDXL."""

    kind = ModelType.EMBEDDING

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        pickled = "string_to_param" in t  # an A1111 .pt: its other strings are not all tensor names
        if not pickled and (not t.names or len(t) > 6 or not all(n.split(".")[0] in EMBEDDING_KEYS for n in t.names)):
            return None
        if "clip_g" in t:
            return Detection(
                cls.kind, BaseModel.SDXL, 0.95, ["clip_g + clip_l vectors"], {"vectors": t.dim("clip_g", 0)}
            )
        vector = t.first(prefix="emb_params") or t.first(prefix="string_to_param")
        if vector is None:
            return None
        width = t.dim(vector, -1)
        base = _EMBEDDING_DIM_BASE.get(width or 0, BaseModel.UNKNOWN)
        details = {"vectors": t.dim(vector, 0)} if width else {}
        return Detection(cls.kind, base, 0.9, [f"{vector} width {width}"], details)


_LOHA = (".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b")
_LOKR = (".lokr_w1", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2", ".lokr_w2_a", ".lokr_w2_b")
_LYCORIS_OTHER = {"glora": (".a1.weight", ".b1.weight"), "ia3": (".on_input",)}


class LycorisRecogniser(Recogniser):
    """LyCORIS adapters other than plain LoRA: LoHa (``.hada_w1_a``/``_b``, ``.hada_w2_*``), LoKr
    (``.lokr_w1``/``.lokr_w2`` or their ``_a``/``_b`` factors), GLoRA (``.a1.weight``+``.b1.weight``),
    (IA)^3 (``.on_input``). The base comes from the adapted layers, as for LoRA."""

    kind = ModelType.LYCORIS

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if t.endswith(*_LOHA):
            algo = "loha"
        elif t.endswith(*_LOKR):
            algo = "lokr"
        else:
            algo = next((a for a, suffixes in _LYCORIS_OTHER.items() if all(t.endswith(s) for s in suffixes)), "")
        if not algo:
            return None
        base, why = _adapter_base(t)
        return Detection(cls.kind, base, 0.9, [f"LyCORIS {algo} keys", why], {"algo": algo, **_dora(t)})


_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_")
_LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight")


class KohyaLoraRecogniser(Recogniser):
    """kohya-ss LoRA/LoCon/DoRA: ``lora_unet_*``/``lora_te[123]_*`` modules with ``.lora_down.weight``,
    ``.lora_up.weight`` and ``.alpha``; DoRA adds ``.dora_scale``. Rank = ``lora_down`` out-dim."""

    kind = ModelType.LORA

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if not (t.startswith(*_KOHYA_PREFIXES) and t.endswith(*_LORA_SUFFIXES)):
            return None
        base, why = _adapter_base(t)
        down = t.first(suffix=".lora_down.weight")
        details = {"family": "kohya", "rank": t.dim(down, 0), **_dora(t)}
        return Detection(cls.kind, base, 0.95, ["kohya lora_unet_/lora_te_ names", why], details)


_PEFT_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora.down.weight", "_lora.down.weight", ".down.weight")


class DiffusersLoraRecogniser(Recogniser):
    """Diffusers/PEFT and related LoRA naming: ``*.lora_A.weight``/``*.lora_B.weight`` (PEFT,
    ComfyUI/BFL ``diffusion_model.*``), older ``*.lora.down.weight`` / ``processor.to_q_lora.down.weight``,
    XLabs Flux ``*.processor.proj_lora1.down.weight``. DoRA adds ``.dora_scale`` / ``lora_magnitude_vector``."""

    kind = ModelType.LORA

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        peft = t.endswith(".lora_A.weight") and t.endswith(".lora_B.weight")
        old = t.endswith(".lora.down.weight", "_lora.down.weight") or t.contains("_lora1.down.weight")
        if not (peft or old):
            return None
        base, why = _adapter_base(t)
        down = t.first(suffix=".lora_A.weight") or t.first(suffix="down.weight")
        details = {"family": "peft" if peft else "diffusers", "rank": t.dim(down, 0), **_dora(t)}
        return Detection(cls.kind, base, 0.9, ["diffusers/PEFT LoRA names", why], details)


def _dora(t: Tensors) -> dict[str, bool]:
    return (
        {"dora": True} if t.endswith(".dora_scale", ".lora_magnitude_vector", ".lora_magnitude_vector.weight") else {}
    )


_ADAPTER_DOWN = (
    ".lora_down.weight",
    ".lora_A.weight",
    ".lora.down.weight",
    "_lora.down.weight",
    ".hada_w1_b",
    ".hada_w2_b",
)


def _adapter_in_dim(t: Tensors, needle: str) -> int | None:
    """Input width of the adapted layer whose flattened name contains ``needle`` (e.g. ``attn2_to_k``)."""
    for name in t.names:
        if needle not in name:
            continue
        if name.endswith(_ADAPTER_DOWN):
            width = t.dim(name, 1)
            if width:
                return width
        if name.endswith((".lokr_w1", ".lokr_w1_b")):
            module = name.rsplit(".", 1)[0]
            w1 = t.dim(name, 1)
            w2 = t.dim(f"{module}.lokr_w2", 1) or t.dim(f"{module}.lokr_w2_b", 1)
            if w1 and w2:
                return w1 * w2
    return None


def _adapter_base(t: Tensors) -> tuple[BaseModel, str]:
    """Base of a LoRA/LyCORIS from the layer names it adapts and their widths (InvokeAI's approach)."""
    if t.contains("double_blocks", "single_blocks", "single_transformer_blocks", "lora_te3_"):
        return BaseModel.FLUX1, "Flux block names"
    if t.contains("joint_blocks") or t.startswith("transformer.transformer_blocks."):
        return BaseModel.SD3, "SD3 MMDiT block names"
    if t.startswith("lora_te1_", "lora_te2_", "text_encoder_2.") or t.contains("input_blocks", "output_blocks"):
        return BaseModel.SDXL, "SDXL names (two text encoders / SGM UNet blocks)"
    for needle in ("attn2_to_k", "attn2.to_k"):
        width = _adapter_in_dim(t, needle)
        if width in _CONTEXT_DIM_BASE:
            return _CONTEXT_DIM_BASE[width], f"cross-attention to_k input width {width}"
    for needle in ("mlp_fc1", "mlp.fc1"):
        width = _adapter_in_dim(t, needle)
        if width in _EMBEDDING_DIM_BASE:
            return _EMBEDDING_DIM_BASE[width], f"text encoder width {width}"
    return BaseModel.UNKNOWN, "no width-bearing layer found"


class ControlNetRecogniser(Recogniser):
    """ControlNet: LDM ``control_model.input_hint_block.*``/``zero_convs.*`` (or unprefixed), diffusers
    ``controlnet_cond_embedding.conv_in.weight``, Flux/SD3 ``controlnet_blocks.*``; control-LoRA has a
    ``lora_controlnet`` marker. Base from the cross-attention width or transformer block names."""

    kind = ModelType.CONTROLNET

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        ldm = t.contains("input_hint_block.") and t.contains("zero_convs.")
        diffusers = t.startswith("controlnet_cond_embedding.")
        dit = t.startswith("controlnet_blocks.", "controlnet_x_embedder.")
        if not (ldm or diffusers or dit or "lora_controlnet" in t):
            return None
        details: dict[str, Any] = {"format": "ldm" if ldm else "diffusers"}
        if "lora_controlnet" in t:
            details["control_lora"] = True
        if t.contains("single_transformer_blocks", "double_blocks", "single_blocks"):
            base, why = BaseModel.FLUX1, "Flux block names"
        elif dit:
            base, why = BaseModel.SD3, "MMDiT controlnet blocks"
        else:
            base, why = _context_base(t, "")
        return Detection(cls.kind, base, 0.9, ["ControlNet hint/conditioning blocks", why], details)


_UNET = "model.diffusion_model."
_VAE_PREFIXES = ("first_stage_model.", "vae.")
_TEXT_PREFIXES = ("cond_stage_model.", "conditioner.embedders.", "text_encoders.")


class CheckpointRecogniser(Recogniser):
    """Full checkpoint (LDM single-file layout): a UNet/DiT under ``model.diffusion_model.`` together
    with a VAE (``first_stage_model.``/``vae.``) or text encoders (``cond_stage_model.``,
    ``conditioner.embedders.``, ``text_encoders.``). Base from the diffusion model (see ``_unet_base``)."""

    kind = ModelType.BASE_MODEL

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if not (t.startswith(_UNET) and t.startswith(*_VAE_PREFIXES, *_TEXT_PREFIXES)):
            return None
        base, why, details = _unet_base(t, _UNET)
        return Detection(cls.kind, base, 0.95, ["UNet + VAE/text encoder in one file", why], details)


class DiffusionModelRecogniser(Recogniser):
    """Bare diffusion model (UNet/DiT only): ``model.diffusion_model.`` with nothing else, or the same
    names unprefixed (``input_blocks.*``+``time_embed.*``; Flux ``double_blocks.*``+``img_in``; SD3
    ``joint_blocks.*``), or diffusers ``down_blocks.*``+``conv_in``+``time_embedding`` /
    ``transformer_blocks.*``+``x_embedder``/``pos_embed``."""

    kind = ModelType.DIFFUSION_MODEL

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        for prefix in (_UNET, "diffusion_model.", ""):
            ldm = t.startswith(f"{prefix}input_blocks.") and t.startswith(f"{prefix}time_embed.")
            dit = t.startswith(f"{prefix}double_blocks.", f"{prefix}joint_blocks.")
            if ldm or dit:
                base, why, details = _unet_base(t, prefix)
                return Detection(cls.kind, base, 0.9, [f"diffusion model under {prefix or 'no prefix'}", why], details)
        if t.startswith("down_blocks.") and "conv_in.weight" in t and t.startswith("time_embedding."):
            base, why = _context_base(t, "")
            return Detection(cls.kind, base, 0.85, ["diffusers UNet", why], {"format": "diffusers"})
        if t.startswith("transformer_blocks.") and t.startswith("x_embedder.", "pos_embed."):
            if t.startswith("single_transformer_blocks."):
                dev = t.startswith("time_text_embed.guidance_embedder.")
                details = {"format": "diffusers", "variant": "dev" if dev else "schnell"}
                return Detection(cls.kind, BaseModel.FLUX1, 0.85, ["diffusers Flux transformer"], details)
            return Detection(cls.kind, BaseModel.SD3, 0.8, ["diffusers MMDiT transformer"], {"format": "diffusers"})
        return None


def _context_base(t: Tensors, prefix: str) -> tuple[BaseModel, str]:
    """SD1/SD2/SDXL from the cross-attention key width (768/1024/2048; 1280 is the SDXL refiner)."""
    to_k = t.first(prefix=prefix, suffix="attn2.to_k.weight")
    width = t.dim(to_k, 1)
    if width in _CONTEXT_DIM_BASE:
        return _CONTEXT_DIM_BASE[width], f"cross-attention context width {width}"
    return BaseModel.UNKNOWN, "no cross-attention layer found"


def _unet_base(t: Tensors, prefix: str) -> tuple[BaseModel, str, dict[str, Any]]:
    """Architecture of an LDM-layout diffusion model whose keys start with ``prefix``."""
    if t.startswith(f"{prefix}double_blocks."):
        dev = f"{prefix}guidance_in.in_layer.weight" in t
        return BaseModel.FLUX1, "Flux double/single blocks", {"variant": "dev" if dev else "schnell"}
    if t.startswith(f"{prefix}joint_blocks."):
        depth = 1 + max(int(n[len(prefix) :].split(".")[1]) for n in t.with_prefix(f"{prefix}joint_blocks."))
        large, medium35 = depth >= 38, t.contains(".x_block.attn2.")
        base = BaseModel.SD35 if large or medium35 else BaseModel.SD3
        variant = "large" if large else "medium"
        return base, f"MMDiT with {depth} joint blocks", {"variant": variant, "depth": depth}
    base, why = _context_base(t, prefix)
    details: dict[str, Any] = {}
    if base is BaseModel.SDXL and why.endswith("1280"):
        details["variant"] = "refiner"
    channels = t.dim(f"{prefix}input_blocks.0.0.weight", 1)
    if channels in (8, 9):
        details["variant"] = "inpainting" if channels == 9 else "instruct-pix2pix"
    return base, why, details


class VaeRecogniser(Recogniser):
    """VAE: ``encoder.conv_in.weight`` and ``decoder.conv_in.weight`` (optionally under
    ``first_stage_model.``/``vae.``) with no diffusion model. Latent channels = in-dim of
    ``decoder.conv_in.weight``: 4 → the SD1/SD2/SDXL family (shapes cannot tell which), 16 → SD3/Flux."""

    kind = ModelType.VAE

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        for prefix in ("", *_VAE_PREFIXES):
            if f"{prefix}encoder.conv_in.weight" in t and f"{prefix}decoder.conv_in.weight" in t:
                channels = t.dim(f"{prefix}decoder.conv_in.weight", 1)
                details: dict[str, Any] = {"latent_channels": channels}
                if t.startswith(f"{prefix}encoder.down_blocks."):
                    details["format"] = "diffusers"
                return Detection(cls.kind, BaseModel.UNKNOWN, 0.9, [f"VAE with {channels} latent channels"], details)
        return None


class TextEncoderRecogniser(Recogniser):
    """Text encoder: T5 (``encoder.block.0.layer.0.SelfAttention.q.weight``; d_model 4096 = T5-XXL),
    CLIP in HF naming (``text_model.encoder.layers.*``; width 768 = CLIP-L, 1280 = CLIP-G, 1024 = CLIP-H)
    or OpenCLIP (``transformer.resblocks.*``), without a vision tower. Shared by several bases."""

    kind = ModelType.TEXT_ENCODER

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        q = t.first(suffix="encoder.block.0.layer.0.SelfAttention.q.weight")
        if q:
            width = t.dim(q, 1)
            encoder = "t5xxl" if width == 4096 else "t5"
            return Detection(cls.kind, BaseModel.UNKNOWN, 0.9, [f"T5 encoder width {width}"], {"encoder": encoder})
        fc1 = t.first(contains="text_model.encoder.layers.0.", suffix="mlp.fc1.weight") or t.first(
            prefix="transformer.resblocks.0.", suffix="mlp.c_fc.weight"
        )
        if fc1 and not t.contains("vision_model."):
            width = t.dim(fc1, 1)
            encoder = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}.get(width or 0, "clip")
            return Detection(
                cls.kind, BaseModel.UNKNOWN, 0.85, [f"CLIP text encoder width {width}"], {"encoder": encoder}
            )
        return None


class ClipVisionRecogniser(Recogniser):
    """CLIP vision tower: ``vision_model.embeddings.patch_embedding.weight`` (HF naming)."""

    kind = ModelType.CLIP_VISION

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if t.contains("vision_model.embeddings.patch_embedding"):
            return Detection(cls.kind, BaseModel.UNKNOWN, 0.85, ["CLIP vision embeddings"])
        return None


class UpscalerRecogniser(Recogniser):
    """ESRGAN-family upscaler: ``conv_first.weight`` with ``body.*``/``RRDB_trunk.*`` (new naming) or
    ``model.0.weight`` with ``model.1.sub.*`` (old naming)."""

    kind = ModelType.UPSCALER

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        new = "conv_first.weight" in t and t.startswith("body.", "RRDB_trunk.")
        old = "model.0.weight" in t and t.startswith("model.1.sub.")
        if new or old:
            return Detection(cls.kind, BaseModel.OTHER, 0.8, ["ESRGAN layer names"])
        return None


# Order matters: adapters before full models (a LoRA names UNet layers), ControlNet before the bare
# diffusion model (it carries input_blocks too), the catch-all-ish encoders last.
RECOGNISERS: tuple[type[Recogniser], ...] = (
    EmbeddingRecogniser,
    LycorisRecogniser,
    KohyaLoraRecogniser,
    DiffusersLoraRecogniser,
    ControlNetRecogniser,
    CheckpointRecogniser,
    DiffusionModelRecogniser,
    VaeRecogniser,
    TextEncoderRecogniser,
    ClipVisionRecogniser,
    UpscalerRecogniser,
)


def detect(tensors: Tensors | SafetensorsHeader | Mapping[str, Shape | None]) -> Detection:
    """Kind and base from tensor names and shapes alone (metadata refines it: see ``refine_base``)."""
    if isinstance(tensors, SafetensorsHeader):
        tensors = Tensors.from_header(tensors)
    elif not isinstance(tensors, Tensors):
        tensors = Tensors(tensors)
    for recogniser in RECOGNISERS:
        found = recogniser.recognise(tensors)
        if found is not None:
            found.evidence.insert(0, recogniser.__name__)
            return found
    return Detection(evidence=["no recogniser matched"])


# --- base refinement from metadata --------------------------------------------------------------

_ARCHITECTURES: list[tuple[str, BaseModel]] = [
    ("stable-diffusion-v1", BaseModel.SD15),
    ("stable-diffusion-v2", BaseModel.SD2),
    ("stable-diffusion-xl", BaseModel.SDXL),
    ("stable-diffusion-v3-5", BaseModel.SD35),
    ("stable-diffusion-v3.5", BaseModel.SD35),
    ("stable-diffusion-3.5", BaseModel.SD35),
    ("stable-diffusion-v3", BaseModel.SD3),
    ("stable-diffusion-3", BaseModel.SD3),
    ("flux-1", BaseModel.FLUX1),
    ("flux.1", BaseModel.FLUX1),
    ("flux-2", BaseModel.FLUX2),
]
_KOHYA_VERSIONS: list[tuple[str, BaseModel]] = [
    ("sd_v1", BaseModel.SD15),
    ("sd_v2", BaseModel.SD2),
    ("sdxl", BaseModel.SDXL),
    ("sd3.5", BaseModel.SD35),
    ("sd3", BaseModel.SD3),
    ("flux2", BaseModel.FLUX2),
    ("flux", BaseModel.FLUX1),
]
# Substrings of a training-base or file name; the SDXL sub-families first.
_NAME_HINTS: list[tuple[str, BaseModel]] = [
    ("pony", BaseModel.PONY),
    ("illustrious", BaseModel.ILLUSTRIOUS),
    ("noob", BaseModel.NOOBAI),
    ("flux", BaseModel.FLUX1),
    ("sd3.5", BaseModel.SD35),
    ("sd35", BaseModel.SD35),
    ("sd3", BaseModel.SD3),
    ("sdxl", BaseModel.SDXL),
    ("sd_xl", BaseModel.SDXL),
    ("xl", BaseModel.SDXL),
    ("v1-5", BaseModel.SD15),
    ("sd15", BaseModel.SD15),
    ("sd1.5", BaseModel.SD15),
]


def base_from_name(name: str) -> BaseModel:
    """A base hinted by a file or model name (``ponyDiffusionV6XL`` → Pony); UNKNOWN when silent."""
    text = name.lower()
    return next((base for needle, base in _NAME_HINTS if needle in text), BaseModel.UNKNOWN)


def base_from_metadata(metadata: Mapping[str, str]) -> tuple[BaseModel, str]:
    """Base from header metadata: ``modelspec.architecture`` → ``ss_base_model_version`` → ``ss_v2``,
    then ``ss_sd_model_name`` narrows SDXL to Pony/Illustrious/NoobAI (or decides alone).

    Returns (UNKNOWN, "") when the metadata says nothing.
    """
    base, source = BaseModel.UNKNOWN, ""
    architecture = metadata.get("modelspec.architecture", "").lower()
    version = metadata.get("ss_base_model_version", "").lower()
    if architecture:
        base = next((b for needle, b in _ARCHITECTURES if architecture.startswith(needle)), BaseModel.UNKNOWN)
        source = "modelspec.architecture" if base is not BaseModel.UNKNOWN else ""
    if base is BaseModel.UNKNOWN and "black-forest-labs/flux" in metadata.get("modelspec.implementation", ""):
        base, source = BaseModel.FLUX1, "modelspec.implementation"
    if base is BaseModel.UNKNOWN and version:
        base = next((b for needle, b in _KOHYA_VERSIONS if version.startswith(needle)), BaseModel.UNKNOWN)
        source = "ss_base_model_version" if base is not BaseModel.UNKNOWN else ""
    if base is BaseModel.UNKNOWN and metadata.get("ss_v2") == "True":
        base, source = BaseModel.SD2, "ss_v2"
    hinted = base_from_name(metadata.get("ss_sd_model_name", ""))
    if hinted is not BaseModel.UNKNOWN and (
        base is BaseModel.UNKNOWN or (base is BaseModel.SDXL and hinted.family is base)
    ):
        base, source = hinted, "ss_sd_model_name"
    return base, source


def refine_base(
    detected: BaseModel, *claims: tuple[BaseModel, str], fallback: tuple[BaseModel, str] | None = None
) -> tuple[BaseModel, str]:
    """Combine the tensor verdict with claims (CivitAI baseModel, header metadata …, best first).

    Tensors decide the family when they can; a claim of the same family refines it (SDXL → Pony);
    a claim of another family is ignored. When tensors are silent the first claim wins, then
    ``fallback`` (e.g. a file-name hint).
    """
    known = {BaseModel.UNKNOWN, BaseModel.OTHER}
    usable = [(b, s) for b, s in claims if b not in known]
    if detected not in known:
        return next(((b, s) for b, s in usable if b.family is detected.family), (detected, "tensors"))
    if usable:
        return usable[0]
    if fallback and fallback[0] not in known:
        return fallback
    return detected, "tensors" if detected is not BaseModel.UNKNOWN else ""
