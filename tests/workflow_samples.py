"""Workflows and images for the workflow tests: the real template, and small hand-made ones.

Images are written with Pillow the way the hosts write them: PNG text chunks (ComfyUI ``workflow`` and
``prompt``, A1111 ``parameters``) and WebP EXIF (ComfyUI's SaveAnimatedWEBP: tag 0x0110 =
``"prompt:<json>"``, 0x010F = ``"workflow:<json>"``; A1111: UserComment in the Exif IFD).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = FIXTURES / "comfyui" / "workflow_template_z_image_turbo_subgraph.json"
SUBGRAPH_ID = "ef10a538-17cf-46fb-930c-5460c4cf7f0e"


def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text(encoding="utf-8"))


def node(
    node_id: int, node_type: str, widgets: list[Any] | dict[str, Any], *, mode: int = 0, models: Any = None
) -> dict:
    properties: dict[str, Any] = {"Node name for S&R": node_type}
    if models is not None:
        properties["models"] = models
    return {"id": node_id, "type": node_type, "mode": mode, "inputs": [], "outputs": [], "properties": properties,
            "widgets_values": widgets}  # fmt: skip


def ui_workflow(nodes: list[dict], *, models: list[dict] | None = None, subgraphs: list[dict] | None = None) -> dict:
    graph: dict[str, Any] = {"last_node_id": 99, "last_link_id": 0, "nodes": nodes, "links": [], "groups": [],
                             "config": {}, "extra": {}, "version": 0.4}  # fmt: skip
    if models is not None:
        graph["models"] = models
    if subgraphs is not None:
        graph["definitions"] = {"subgraphs": subgraphs}
    return graph


def api_prompt() -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/base.safetensors"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "styles\\ink.safetensors",
                "strength_model": 0.8,
                "strength_clip": 1.0,
                "model": ["4", 0],
                "clip": ["4", 1],
            },  # fmt: skip
        },
        "11": {"class_type": "HubloaderLoraLoader", "inputs": {"lora_name": "detail.safetensors", "model": ["10", 0]}},
        "12": {"class_type": "SomeCustomUpscaler", "inputs": {"upscaler": "4x_ultra.pth", "scale": 2}},
        "13": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "14": {"class_type": "KSampler", "inputs": {"seed": 1, "sampler_name": "euler", "model": ["11", 0]}},
    }


INFOTEXT = (
    "masterpiece, a cat <lora:ink_style:0.7>, <lora:detail-tweaker:1.2:0.5> embedding fun\n"
    "Negative prompt: blurry, easynegative\n"
    "Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 42, Size: 1024x1024, Model hash: 31e35c80fc, "
    'Model: sd_xl_base_1.0, VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, Lora hashes: "ink_style: 0123456789ab, '
    'detail-tweaker: ba9876543210", TI hashes: "easynegative: c74b4e810b03", Version: v1.10.1'
)


def save_png(path: Path, **chunks: str) -> Path:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, "PNG", pnginfo=info)
    return path


def save_comfy_webp(path: Path, *, prompt: dict | None = None, workflow: dict | None = None) -> Path:
    """As ComfyUI's SaveAnimatedWEBP writes it (nodes.py / comfy_extras/nodes_images.py)."""
    from PIL import Image

    image = Image.new("RGB", (8, 8), (30, 200, 30))
    exif = image.getexif()
    if prompt is not None:
        exif[0x0110] = f"prompt:{json.dumps(prompt)}"
    tag = 0x010F
    for key, value in {"workflow": workflow}.items():
        if value is not None:
            exif[tag] = f"{key}:{json.dumps(value)}"
            tag -= 1
    image.save(path, "WEBP", exif=exif, lossless=True)
    return path


def save_a1111_webp(path: Path, parameters: str) -> Path:
    """As A1111 writes WebP/JPEG infotext: EXIF UserComment, piexif's "unicode" encoding (UTF-16 BE)."""
    from PIL import Image

    image = Image.new("RGB", (8, 8), (30, 30, 200))
    exif = image.getexif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + parameters.encode("utf-16-be")
    image.save(path, "WEBP", exif=exif, lossless=True)
    return path
