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
