"""A small demo catalog for ``python -m tests.fakehub --seed-demo`` (and benchmarks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import modelfiles as mf

if TYPE_CHECKING:
    from .server import FakeHub


def seed_demo(hub: FakeHub) -> None:
    """A few HF repos and CivitAI models of each kind, plus a 1 GiB generated file for speed tests. The recorded
    CivitAI fixtures are left out: their real bytes are not here, so their downloads could never verify."""
    hub.civitai.drop_recorded()
    lora = mf.safetensors_bytes(mf.kohya_lora("sdxl"), mf.kohya_metadata("pixel_art", "sdxl"), seed=1)
    hub.add_hf_repo(
        "demo/sdxl-pixel-lora",
        {"README.md": b"# Pixel art LoRA\n", "pixel-art.safetensors": lora},
        tags=["lora", "text-to-image", "base_model:stabilityai/stable-diffusion-xl-base-1.0"],
        library_name="diffusers",
        pipeline_tag="text-to-image",
        downloads=1200,
        likes=40,
    )
    hub.add_hf_repo(
        "demo/sd15-checkpoint",
        {"README.md": b"# SD 1.5 demo\n", "model.safetensors": mf.safetensors_bytes(mf.sd15_checkpoint(), seed=2)},
        tags=["stable-diffusion", "text-to-image"],
        library_name="diffusers",
        pipeline_tag="text-to-image",
        downloads=800,
        likes=12,
    )
    hub.add_hf_repo("demo/big-model", {"model.safetensors": ("generated", 1 << 30)}, downloads=5)
    hub.add_civitai_model("Pixel Art XL", trained_words=["pixel art"], stats={"downloadCount": 5000})
    hub.add_civitai_model("Tiny SD15 Checkpoint", type="Checkpoint", base_model="SD 1.5")
    hub.add_civitai_model("Easy Negative", type="TextualInversion", base_model="SD 1.5", trained_words=["easyneg"])
    hub.add_file("/files/big-1g.bin", size=1 << 30)
