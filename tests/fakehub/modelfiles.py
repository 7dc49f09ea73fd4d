"""Generate small but real .safetensors files with the key layouts real models have.

Shapes that identify an architecture (cross-attention widths, label embedding, text-encoder
widths) are real; the hundreds of other tensors of a real model are represented by a few with
small shapes, so a "checkpoint" is a few MB. Bytes are deterministic for a given seed, so every
file has a stable SHA256 that tests can compute independently.
"""

from __future__ import annotations

import json
import random
import struct
from math import prod
from pathlib import Path

DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}

TensorSpec = dict[str, tuple[str, tuple[int, ...]]]


def safetensors_bytes(tensors: TensorSpec, metadata: dict[str, str] | None = None, seed: int = 0) -> bytes:
    """The whole file as bytes: 8-byte length, space-padded JSON header, tensor data in key order."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    data = random.Random(seed).randbytes(offset)
    return struct.pack("<Q", len(raw)) + raw + data


def write_safetensors(path: Path, tensors: TensorSpec, metadata: dict[str, str] | None = None, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors_bytes(tensors, metadata, seed))
    return path


# --- full checkpoints (LDM single-file layout) -------------------------------------------------

_UNET = "model.diffusion_model."


def sd15_checkpoint() -> TensorSpec:
    return {
        f"{_UNET}input_blocks.0.0.weight": ("F16", (320, 4, 3, 3)),
        f"{_UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", (320, 768)),
        f"{_UNET}input_blocks.1.1.proj_in.weight": ("F16", (320, 320, 1, 1)),
        f"{_UNET}out.2.weight": ("F16", (4, 320, 3, 3)),
        "first_stage_model.decoder.conv_in.weight": ("F16", (512, 4, 3, 3)),
        "first_stage_model.encoder.conv_in.weight": ("F16", (128, 3, 3, 3)),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": ("F16", (64, 768)),
        "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight": ("F16", (32, 768)),
    }


def sdxl_checkpoint() -> TensorSpec:
    return {
        f"{_UNET}input_blocks.0.0.weight": ("F16", (320, 4, 3, 3)),
        f"{_UNET}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": ("F16", (640, 2048)),
        f"{_UNET}label_emb.0.0.weight": ("F16", (1280, 2816)),
        f"{_UNET}out.2.weight": ("F16", (4, 320, 3, 3)),
        "first_stage_model.decoder.conv_in.weight": ("F16", (512, 4, 3, 3)),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": ("F16", (64, 768)),
        "conditioner.embedders.1.model.token_embedding.weight": ("F16", (64, 1280)),
    }


# --- LoRAs (kohya naming) ----------------------------------------------------------------------


def kohya_lora(base: str = "sd15", rank: int = 8) -> TensorSpec:
    """A kohya LoRA for ``base`` in {"sd15", "sdxl"}: real module names, real in/out widths."""
    tensors: TensorSpec = {}

    def module(name: str, in_dim: int, out_dim: int) -> None:
        tensors[f"{name}.alpha"] = ("F16", ())
        tensors[f"{name}.lora_down.weight"] = ("F16", (rank, in_dim))
        tensors[f"{name}.lora_up.weight"] = ("F16", (out_dim, rank))

    if base == "sdxl":
        module("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048, 640)
        module("lora_te1_text_model_encoder_layers_0_mlp_fc1", 768, 3072)
        module("lora_te2_text_model_encoder_layers_0_mlp_fc1", 1280, 5120)
    else:
        module("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768, 320)
        module("lora_te_text_model_encoder_layers_0_mlp_fc1", 768, 3072)
    return tensors


def kohya_metadata(
    output_name: str,
    base: str = "sd15",
    tag_frequency: dict[str, dict[str, int]] | None = None,
    **extra: str,
) -> dict[str, str]:
    """``ss_*`` and ``modelspec.*`` metadata as kohya sd-scripts writes it (all values strings)."""
    sdxl = base == "sdxl"
    meta = {
        "ss_output_name": output_name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": "8",
        "ss_network_alpha": "4.0",
        "ss_base_model_version": "sdxl_base_v1-0" if sdxl else "sd_v1",
        "ss_sd_model_name": "sd_xl_base_1.0.safetensors" if sdxl else "v1-5-pruned-emaonly.safetensors",
        "ss_v2": "False",
        "ss_training_comment": "None",
        "ss_tag_frequency": json.dumps(tag_frequency or {}),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": ("stable-diffusion-xl-v1-base" if sdxl else "stable-diffusion-v1") + "/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": output_name,
        "modelspec.resolution": "1024x1024" if sdxl else "512x512",
    }
    meta.update(extra)
    return meta


def embedding(base: str = "sd15", vectors: int = 4) -> TensorSpec:
    if base == "sdxl":
        return {"clip_g": ("F16", (vectors, 1280)), "clip_l": ("F16", (vectors, 768))}
    return {"emb_params": ("F32", (vectors, 768))}


def sd2_checkpoint() -> TensorSpec:
    """SD 2.x: context width 1024, OpenCLIP-H text encoder, linear proj_in."""
    return {
        f"{_UNET}input_blocks.0.0.weight": ("F16", (320, 4, 3, 3)),
        f"{_UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", (320, 1024)),
        f"{_UNET}input_blocks.1.1.proj_in.weight": ("F16", (320, 320)),
        "first_stage_model.decoder.conv_in.weight": ("F16", (512, 4, 3, 3)),
        "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight": ("F16", (32, 1024)),
    }


def sd15_inpainting_checkpoint() -> TensorSpec:
    spec = sd15_checkpoint()
    spec[f"{_UNET}input_blocks.0.0.weight"] = ("F16", (320, 9, 3, 3))
    return spec


def sdxl_refiner_checkpoint() -> TensorSpec:
    """SDXL refiner: context width 1280, label_emb in-dim 2560, OpenCLIP-G only."""
    return {
        f"{_UNET}input_blocks.0.0.weight": ("F16", (384, 4, 3, 3)),
        f"{_UNET}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": ("F16", (768, 1280)),
        f"{_UNET}label_emb.0.0.weight": ("F16", (1536, 2560)),
        "first_stage_model.decoder.conv_in.weight": ("F16", (512, 4, 3, 3)),
        "conditioner.embedders.0.model.token_embedding.weight": ("F16", (64, 1280)),
    }


def sd3_checkpoint(depth: int = 24, sd35: bool = False) -> TensorSpec:
    """SD3/3.5 MMDiT single file: ``joint_blocks`` (24 medium, 38 large); 3.5 medium adds x_block.attn2."""
    spec: TensorSpec = {
        f"{_UNET}x_embedder.proj.weight": ("F16", (64, 16, 2, 2)),
        "first_stage_model.decoder.conv_in.weight": ("F16", (512, 16, 3, 3)),
        "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": ("F16", (768,)),
    }
    for i in range(depth):
        spec[f"{_UNET}joint_blocks.{i}.context_block.attn.qkv.weight"] = ("F16", (12, 8))
    if sd35:
        spec[f"{_UNET}joint_blocks.0.x_block.attn2.qkv.weight"] = ("F16", (12, 8))
    return spec


def flux_diffusion_model(variant: str = "dev", prefix: str = "") -> TensorSpec:
    """Flux.1 transformer as distributed (``flux1-dev.safetensors``): double/single blocks, img_in
    with 64 inputs; dev has ``guidance_in``, schnell does not. ``prefix="model.diffusion_model."``
    for the ComfyUI single-file layout."""
    spec: TensorSpec = {
        f"{prefix}img_in.weight": ("BF16", (3072, 64)),
        f"{prefix}double_blocks.0.img_attn.norm.key_norm.scale": ("BF16", (128,)),
        f"{prefix}double_blocks.0.img_attn.proj.weight": ("BF16", (16, 16)),
        f"{prefix}single_blocks.0.linear1.weight": ("BF16", (16, 16)),
        f"{prefix}time_in.in_layer.weight": ("BF16", (16, 256)),
    }
    if variant == "dev":
        spec[f"{prefix}guidance_in.in_layer.weight"] = ("BF16", (16, 256))
    return spec


def unet_only(base: str = "sdxl") -> TensorSpec:
    """A bare UNet (``diffusion_models/`` file): the checkpoint's UNet tensors without VAE/text encoders."""
    full = sdxl_checkpoint() if base == "sdxl" else sd15_checkpoint()
    spec = {k[len(_UNET) :]: v for k, v in full.items() if k.startswith(_UNET)}
    spec["time_embed.0.weight"] = ("F16", (1280, 320))
    return spec


def vae(latent_channels: int = 4, diffusers: bool = False) -> TensorSpec:
    """A standalone VAE; 4 latent channels (SD1/SD2/SDXL) or 16 (SD3/Flux ``ae.safetensors``)."""
    spec: TensorSpec = {
        "encoder.conv_in.weight": ("F16", (128, 3, 3, 3)),
        "decoder.conv_in.weight": ("F16", (512, latent_channels, 3, 3)),
        "decoder.conv_out.weight": ("F16", (3, 128, 3, 3)),
    }
    if diffusers:
        spec["encoder.down_blocks.0.resnets.0.conv1.weight"] = ("F16", (128, 128, 3, 3))
    else:
        spec["encoder.down.0.block.0.conv1.weight"] = ("F16", (128, 128, 3, 3))
    return spec


def controlnet(layout: str = "ldm", base: str = "sd15") -> TensorSpec:
    """ControlNet in the original LDM layout (``control_model.*``) or diffusers layout."""
    width = {"sd15": 768, "sd2": 1024, "sdxl": 2048}[base]
    if layout == "diffusers":
        return {
            "controlnet_cond_embedding.conv_in.weight": ("F16", (16, 3, 3, 3)),
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": ("F16", (640, width)),
            "controlnet_down_blocks.0.weight": ("F16", (320, 320, 1, 1)),
        }
    return {
        "control_model.input_hint_block.0.weight": ("F16", (16, 3, 3, 3)),
        "control_model.zero_convs.0.0.weight": ("F16", (320, 320, 1, 1)),
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", (320, width)),
        "control_model.time_embed.0.weight": ("F16", (1280, 320)),
    }


def t5_encoder() -> TensorSpec:
    """T5-XXL encoder (``t5xxl_fp16.safetensors``): d_model 4096 as the q projection's in-dim."""
    return {
        "shared.weight": ("F16", (32, 4096)),
        "encoder.block.0.layer.0.SelfAttention.q.weight": ("F16", (8, 4096)),
        "encoder.final_layer_norm.weight": ("F16", (4096,)),
    }


def clip_l_encoder() -> TensorSpec:
    """CLIP-L text encoder in HF naming (``clip_l.safetensors``): width 768."""
    return {
        "text_model.embeddings.token_embedding.weight": ("F16", (64, 768)),
        "text_model.encoder.layers.0.mlp.fc1.weight": ("F16", (32, 768)),
        "text_model.final_layer_norm.weight": ("F16", (768,)),
    }


def _lora_modules(modules: dict[str, tuple[int, int]], down: str, up: str, rank: int, alpha: bool) -> TensorSpec:
    tensors: TensorSpec = {}
    for name, (in_dim, out_dim) in modules.items():
        if alpha:
            tensors[f"{name}.alpha"] = ("F16", ())
        tensors[f"{name}{down}"] = ("F16", (rank, in_dim))
        tensors[f"{name}{up}"] = ("F16", (out_dim, rank))
    return tensors


def kohya_flux_lora(rank: int = 2) -> TensorSpec:
    """kohya ``networks.lora_flux``: ``lora_unet_double_blocks_*``/``lora_unet_single_blocks_*``."""
    modules = {
        "lora_unet_double_blocks_0_img_attn_proj": (3072, 3072),
        "lora_unet_single_blocks_0_linear1": (3072, 21504),
    }
    return _lora_modules(modules, ".lora_down.weight", ".lora_up.weight", rank, alpha=True)


def dora_lora(base: str = "sd15", rank: int = 4) -> TensorSpec:
    """kohya-style DoRA: LoRA keys plus a ``.dora_scale`` per module."""
    tensors = kohya_lora(base, rank)
    for name in [k[: -len(".alpha")] for k in tensors if k.endswith(".alpha")]:
        out_dim = tensors[f"{name}.lora_up.weight"][1][0]
        tensors[f"{name}.dora_scale"] = ("F16", (out_dim, 1))
    return tensors


def diffusers_lora(base: str = "sd15", rank: int = 4) -> TensorSpec:
    """PEFT/diffusers naming (``lora_A``/``lora_B``): UNet for sd15/sdxl, transformer for flux."""
    if base == "flux":
        modules = {
            "transformer.transformer_blocks.0.attn.to_q": (3072, 3072),
            "transformer.single_transformer_blocks.0.proj_out": (15360, 3072),
        }
    elif base == "sdxl":
        modules = {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": (2048, 640),
            "text_encoder_2.text_model.encoder.layers.0.mlp.fc1": (1280, 5120),
        }
    else:
        modules = {
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": (768, 320),
            "text_encoder.text_model.encoder.layers.0.mlp.fc1": (768, 3072),
        }
    return _lora_modules(modules, ".lora_A.weight", ".lora_B.weight", rank, alpha=False)


def lycoris(algo: str = "loha", base: str = "sd15", rank: int = 4) -> TensorSpec:
    """LyCORIS LoHa (``hada_w1_a/b``, ``hada_w2_a/b``) or LoKr (``lokr_w1`` + ``lokr_w2_a/b``) on kohya names."""
    if base == "sdxl":
        modules = {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k": (2048, 640)}
    else:
        modules = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (768, 320)}
    tensors: TensorSpec = {}
    for name, (in_dim, out_dim) in modules.items():
        tensors[f"{name}.alpha"] = ("F16", ())
        if algo == "lokr":
            factor = 8
            tensors[f"{name}.lokr_w1"] = ("F16", (factor, factor))
            tensors[f"{name}.lokr_w2_a"] = ("F16", (out_dim // factor, rank))
            tensors[f"{name}.lokr_w2_b"] = ("F16", (rank, in_dim // factor))
        else:
            for w in ("w1", "w2"):
                tensors[f"{name}.hada_{w}_a"] = ("F16", (out_dim, rank))
                tensors[f"{name}.hada_{w}_b"] = ("F16", (rank, in_dim))
    return tensors


# --- pickles (never loaded: tests only sniff and scan them) ------------------------------------


class _RunsCommand:
    """Pickles to a call of ``os.system``: what a malicious .ckpt does on ``torch.load``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (self.command,))


def pickle_checkpoint_bytes(state: dict | None = None, zip_format: bool = False) -> bytes:
    """A harmless pickle of a dict of tensor names (lists stand in for tensors), raw or torch-zip
    (``archive/data.pkl``) layout."""
    import io
    import pickle
    import zipfile

    state = state if state is not None else {"state_dict": {name: [0.0] for name in sd15_checkpoint()}}
    data = pickle.dumps(state, protocol=2)
    if not zip_format:
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/version", "3\n")
    return out.getvalue()


def malicious_pickle_bytes(command: str = "echo pwned", zip_format: bool = False) -> bytes:
    """A pickle whose loading would run ``os.system(command)``. Never unpickle it; scan only."""
    return pickle_checkpoint_bytes(
        {"state_dict": {"model.x.weight": [0.0]}, "payload": _RunsCommand(command)}, zip_format
    )
