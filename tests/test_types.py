from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hubloader.core.metadata import (
    BaseModel,
    ModelFile,
    ModelFilter,
    ModelFormat,
    ModelMetadata,
    ModelType,
    SortBy,
    Source,
)

ROOT = Path(__file__).resolve().parents[1]


def test_public_import_is_light():
    """ComfyUI and A1111 import us at start-up: the public types must not pull in heavy libraries."""
    code = (
        "import sys, hubloader\n"
        "from hubloader import ModelMetadata, Source, ModelType, BaseModel, ModelFilter, SortBy\n"
        "heavy = [m for m in ('gradio', 'aiohttp', 'huggingface_hub', 'torch', 'requests', 'sqlite3') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("civitai", "expected"),
    [
        ("SD 1.5", BaseModel.SD15),
        ("SD 1.4", BaseModel.SD15),
        ("SD 1.5 LCM", BaseModel.SD15),
        ("SD 2.1 768", BaseModel.SD2),
        ("SDXL 1.0", BaseModel.SDXL),
        ("SDXL Lightning", BaseModel.SDXL),
        ("Pony", BaseModel.PONY),
        ("Illustrious", BaseModel.ILLUSTRIOUS),
        ("NoobAI", BaseModel.NOOBAI),
        ("SD 3", BaseModel.SD3),
        ("SD 3.5 Large", BaseModel.SD35),
        ("Flux.1 D", BaseModel.FLUX1),
        ("Flux.1 Kontext", BaseModel.FLUX1),
        ("Wan Video 14B t2v", BaseModel.OTHER),
        ("", BaseModel.UNKNOWN),
        (None, BaseModel.UNKNOWN),
    ],
)
def test_base_model_from_civitai(civitai, expected):
    assert BaseModel.from_civitai(civitai) is expected


def test_every_civitai_filter_name_maps_back():
    for base in BaseModel:
        for name in base.civitai_names():
            assert BaseModel.from_civitai(name) is base, name


def test_sdxl_family():
    assert BaseModel.PONY.family is BaseModel.SDXL
    assert BaseModel.ILLUSTRIOUS.compatible_with(BaseModel.SDXL)
    assert not BaseModel.SD15.compatible_with(BaseModel.SDXL)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["diffusers", "base_model:stabilityai/stable-diffusion-xl-base-1.0", "lora"], BaseModel.SDXL),
        (["base_model:black-forest-labs/FLUX.1-dev"], BaseModel.FLUX1),
        (["stable-diffusion", "base_model:runwayml/stable-diffusion-v1-5"], BaseModel.SD15),
        (["base_model:stabilityai/stable-diffusion-3.5-large"], BaseModel.SD35),
        (["text-classification"], BaseModel.UNKNOWN),
    ],
)
def test_base_model_from_hf_tags(tags, expected):
    assert BaseModel.from_hf_tags(tags) is expected


def test_model_type_from_civitai():
    assert ModelType.from_civitai("LORA") is ModelType.LORA
    assert ModelType.from_civitai("DoRA") is ModelType.LORA
    assert ModelType.from_civitai("LoCon") is ModelType.LYCORIS
    assert ModelType.from_civitai("Checkpoint") is ModelType.BASE_MODEL is ModelType.CHECKPOINT
    assert ModelType.from_civitai("TextualInversion") is ModelType.EMBEDDING
    assert ModelType.from_civitai("Wildcards") is ModelType.OTHER
    assert ModelType.LORA.civitai_names() == ["LORA", "DoRA"]


def test_parse_accepts_values_names_and_rejects_with_choices():
    assert ModelType.parse("LORA") is ModelType.LORA
    assert ModelType.parse("checkpoint") is ModelType.BASE_MODEL
    assert SortBy.parse("newest") is SortBy.NEWEST
    with pytest.raises(ValueError, match="expected one of"):
        BaseModel.parse("sdxxl")
    assert BaseModel.parse("sdxxl", BaseModel.UNKNOWN) is BaseModel.UNKNOWN


def test_sort_maps_to_both_services():
    assert SortBy.POPULARITY.civitai() == "Most Downloaded"
    assert SortBy.RATING.civitai() == "Highest Rated"
    assert SortBy.NEWEST.huggingface() == "last_modified"


def test_format_from_filename():
    assert ModelFormat.from_filename("a.SAFETENSORS") is ModelFormat.SAFETENSORS
    assert ModelFormat.from_filename("a.ckpt").is_pickle
    assert ModelFormat.from_filename("pytorch_model.bin") is ModelFormat.PICKLE
    assert ModelFormat.from_filename("readme.md") is ModelFormat.OTHER


def test_metadata_round_trips_through_dict(tmp_path):
    meta = ModelMetadata(
        model_id="civitai:1231067@1387174",
        name="pp-storybook",
        source=Source.CIVITAI,
        type=ModelType.LORA,
        base_model=BaseModel.FLUX1,
        version="v1",
        trigger_words=["ppstorybook"],
        recommended_weight=0.8,
        recommended_weight_source="civitai.description",
        local_path=tmp_path / "x.safetensors",
        files=[ModelFile(name="x.safetensors", size_bytes=10, format=ModelFormat.SAFETENSORS, primary=True)],
    )
    data = meta.to_dict()
    assert data["type"] == "lora" and data["base_model"] == "flux1" and isinstance(data["local_path"], str)
    again = ModelMetadata.from_dict(data)
    assert again == meta


def test_seed_fields_all_present():
    seed_fields = (
        "model_id name source type base_model version format size_bytes sha256 trigger_words tags description "
        "download_count rating recommended_weight local_path remote_url created_at updated_at"
    ).split()
    fields = ModelMetadata.__dataclass_fields__
    assert all(name in fields for name in seed_fields)


def test_filter_defaults():
    f = ModelFilter(task="text-to-image", library="diffusers")
    assert f.tags == [] and f.base_model is None
