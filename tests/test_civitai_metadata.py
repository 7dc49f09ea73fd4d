"""CivitAI JSON → ModelMetadata, on the real recorded answers in tests/fixtures/civitai (no server)."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hubloader.core.metadata import BaseModel, ModelFormat, ModelMetadata, ModelType, Source
from hubloader.sources.civitai import html_to_text, metadata_from_civitai, pick_file, thumbs_rating

FIXTURES = Path(__file__).parent / "fixtures" / "civitai"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def version_doc() -> dict:
    return load("model_version_1387174.json")


@pytest.fixture
def model_list() -> dict:
    return load("models_list_checkpoints_highest_rated_page1.json")


def from_version_document(version: dict, **model: object) -> ModelMetadata:
    """What the service does when the model document is unavailable: the version's own ``model`` block."""
    return metadata_from_civitai({"id": version["modelId"], **version["model"], **model}, version)


def test_version_document_parses_completely(version_doc):
    meta = from_version_document(version_doc)
    assert meta.model_id == "civitai:1231067@1387174"
    assert meta.version_id == "1387174"
    assert meta.name == "Vivid Impressions Storybook Style"
    assert meta.version == "v1.0"
    assert meta.source is Source.CIVITAI
    assert meta.type is ModelType.LORA
    assert meta.base_model is BaseModel.FLUX1
    assert meta.extra["civitai_base_model"] == "Flux.1 D"
    assert meta.trigger_words == ["ppstorybook"]
    assert meta.trigger_words_source == "civitai"
    assert meta.format is ModelFormat.SAFETENSORS
    assert meta.size_bytes == 19_281_048  # 18829.1484375 KiB
    assert meta.sha256 == "9753338ab693ca82bf89ed77a5d1912879e40051463ec6e330fb9866ce798668"
    assert meta.hashes == {
        "AutoV1": "f414c813",
        "AutoV2": "9753338ab6",
        "SHA256": "9753338ab693ca82bf89ed77a5d1912879e40051463ec6e330fb9866ce798668",
        "CRC32": "a65ae7b3",
        "BLAKE3": "a5f8ab95ac2486345e4accae541ff19d97ed53efb0a7cc9226636975a0437591",
        "AutoV3": "34a22376739d",
    }
    assert meta.short_hash == "9753338ab6"
    assert meta.air == "urn:air:flux1:lora:civitai:1231067@1387174"
    assert meta.download_count == 1436
    assert meta.like_count == 316
    # The version document lists thumbs-up only: no share can be computed, the legacy rating (0) stands.
    assert meta.rating == 0.0
    assert meta.created_at == datetime(2025, 2, 8, 11, 15, 47, 197000, tzinfo=timezone.utc)
    assert meta.updated_at == datetime(2025, 2, 8, 11, 29, 4, 526000, tzinfo=timezone.utc)
    assert meta.remote_url == "https://civitai.com/api/download/models/1387174"
    assert meta.preview_urls == [
        "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/42b875cf-c62b-41fa-a349-383b7f074351/width=832/56547310.jpeg"
    ]
    assert meta.nsfw is False
    # No settings, no description, and the example image's prompt does not use the LoRA by name.
    assert meta.recommended_weight is None
    assert meta.recommended_weight_source == ""
    [file] = meta.files
    assert (file.name, file.kind, file.primary, file.size_bytes) == (
        "pp-storybook_rank2_bf16.safetensors",
        "Model",
        True,
        19_281_048,
    )
    assert file.hashes == meta.hashes
    assert meta.extra["page_url"] == "https://civitai.com/models/1231067?modelVersionId=1387174"
    assert meta.extra["usageControl"] == "Download"


def test_metadata_survives_a_round_trip_through_a_dict(version_doc):
    meta = from_version_document(version_doc)
    again = ModelMetadata.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta


def test_weight_from_the_model_description(version_doc):
    """The recorded model's description says "Strength: 0.8, experiment as you like"."""
    html = "<p>Flux LoRA in a storybook style.</p><p><strong>Strength: 0.8</strong>, experiment as you like</p>"
    meta = from_version_document(version_doc, description=html, tags=["style", "storybook"])
    assert meta.recommended_weight == 0.8
    assert meta.recommended_weight_source == "civitai.description"
    assert meta.description == "Flux LoRA in a storybook style.\nStrength: 0.8, experiment as you like"
    assert meta.extra["description_html"] == html
    assert meta.tags == ["style", "storybook"]


def test_settings_strength_beats_the_description(version_doc):
    version = {**version_doc, "settings": {"strength": 0.65, "minStrength": 0.4, "maxStrength": 1.0}}
    meta = from_version_document(version, description="<p>weight 0.9</p>")
    assert (meta.recommended_weight, meta.recommended_weight_source) == (0.65, "civitai.settings")
    assert meta.extra["recommended_weight_range"] == [0.4, 1.0]


def test_weight_from_example_images_is_their_median(version_doc):
    version = copy.deepcopy(version_doc)
    image = version["images"][0]
    image["meta"]["resources"] = [
        {"name": "pp-storybook_rank2_bf16", "type": "lora", "weight": 0.7},
        {"name": "another_lora", "type": "lora", "weight": 0.2},  # not this model: ignored
    ]
    second = copy.deepcopy(image)
    second["meta"] = {"prompt": "x <lora:pp-storybook_rank2_bf16:0.9>", "resources": []}
    third = copy.deepcopy(image)
    third["meta"] = {"civitaiResources": [{"type": "lora", "weight": 1.0, "modelVersionId": 1387174}]}
    version["images"] = [image, second, third]
    meta = from_version_document(version)
    assert (meta.recommended_weight, meta.recommended_weight_source) == (0.9, "civitai.images")


def test_a_checkpoint_gets_no_weight_from_prose():
    model = {"id": 1, "name": "ckpt", "type": "Checkpoint", "description": "<p>denoise weight 0.4 for hires</p>"}
    version = {"id": 2, "name": "v1", "baseModel": "SDXL 1.0", "files": []}
    meta = metadata_from_civitai(model, version)
    assert meta.recommended_weight is None
    assert meta.type is ModelType.BASE_MODEL and meta.base_model is BaseModel.SDXL
    assert meta.air == "urn:air:sdxl:checkpoint:civitai:1@2"


def test_every_item_of_the_recorded_model_list_parses(model_list):
    assert len(model_list["items"]) == 10
    for item in model_list["items"]:
        for version in item["modelVersions"]:
            meta = metadata_from_civitai(item, version)
            assert meta.model_id == f"civitai:{item['id']}@{version['id']}"
            assert meta.type is ModelType.BASE_MODEL
            assert meta.base_model is BaseModel.SD15
            assert meta.sha256 and len(meta.sha256) == 64 and meta.sha256 == meta.sha256.lower()
            assert meta.size_bytes > 2_000_000_000
            assert meta.format in (ModelFormat.SAFETENSORS, ModelFormat.CKPT)
            assert meta.tags == item["tags"]
            assert meta.author == item["creator"]["username"]
            assert meta.download_count == version["stats"]["downloadCount"]
            assert 4.9 <= meta.rating <= 5.0
            assert meta.preview_urls and all(u.startswith("https://image.civitai.com/") for u in meta.preview_urls)
            assert meta.description and not re.search(r"<[a-z]+[\s>]|</", meta.description)  # no tags left
            assert meta.air == f"urn:air:sd1:checkpoint:civitai:{item['id']}@{version['id']}"
            assert len(meta.files) == len(version["files"])


def test_dreamshaper_values(model_list):
    item = next(i for i in model_list["items"] if i["id"] == 4384)
    meta = metadata_from_civitai(item, item["modelVersions"][0])
    assert meta.name == "DreamShaper"
    assert meta.version == "8"
    assert meta.version_id == "128713"
    assert meta.rating == 4.96  # 5 × 6088 / (6088 + 53)
    assert meta.like_count == 6088
    assert meta.download_count == 417153
    assert meta.author == "Lykon"
    assert meta.hashes["AutoV2"] == "879db523c3"
    assert meta.files[0].name == "dreamshaper_8.safetensors"
    assert meta.files[0].precision == "fp16"
    assert meta.description.startswith("DreamShaper - V∞!\nPlease check out my other base models")
    assert meta.created_at == datetime(2023, 7, 29, 20, 50, 47, 173000, tzinfo=timezone.utc)  # publishedAt
    assert meta.trigger_words == []


def test_sd15_lcm_and_hyper_variants_are_sd15(model_list):
    variants = {
        v["baseModel"]: metadata_from_civitai(i, v).base_model for i in model_list["items"] for v in i["modelVersions"]
    }
    assert variants == {"SD 1.5": BaseModel.SD15, "SD 1.5 LCM": BaseModel.SD15, "SD 1.5 Hyper": BaseModel.SD15}


def _version(model_list: dict, version_id: int) -> dict:
    return next(v for i in model_list["items"] for v in i["modelVersions"] if v["id"] == version_id)


def test_pick_file_prefers_pruned_fp16_safetensors_for_checkpoints(model_list):
    # Counterfeit v3.0: fp32 (not primary) and fp16 (primary), both pruned SafeTensor.
    assert pick_file(_version(model_list, 57618)["files"], ModelType.BASE_MODEL)["id"] == 41079
    # Realistic Vision Hyper-Inpaint: a full file listed first, the pruned one second.
    assert pick_file(_version(model_list, 501286)["files"], ModelType.BASE_MODEL)["metadata"]["size"] == "pruned"
    # Realistic Vision V5.1: pruned/full × SafeTensor/ckpt.
    chosen = pick_file(_version(model_list, 130072)["files"], ModelType.BASE_MODEL)
    assert (chosen["metadata"], chosen["name"]) == (
        {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
        "realisticVisionV60B1_v51VAE.safetensors",
    )
    # Counterfeit 2.0 only exists as a ckpt: it is the only candidate.
    assert pick_file(_version(model_list, 5057)["files"], ModelType.BASE_MODEL)["name"] == "counterfeitV30_20.ckpt"


def test_pick_file_by_selector_or_file_id(model_list):
    files = _version(model_list, 130072)["files"]
    ckpt = pick_file(files, ModelType.BASE_MODEL, params={"format": "PickleTensor", "size": "full"})
    assert ckpt["name"] == "realisticVisionV60B1_v51VAE.ckpt" and ckpt["metadata"]["size"] == "full"
    assert pick_file(files, ModelType.BASE_MODEL, file_id=files[2]["id"]) is files[2]
    assert pick_file(files, ModelType.BASE_MODEL, params={"fp": "fp8"}) is None
    assert pick_file(files, ModelType.BASE_MODEL, file_id=-1) is None


def test_pick_file_never_picks_training_data_or_configs():
    files = [
        {"id": 1, "name": "data.zip", "type": "Training Data", "metadata": {"format": "Other"}},
        {"id": 2, "name": "cfg.yaml", "type": "Config", "metadata": {"format": "Other"}},
        {"id": 3, "name": "lora.pt", "type": "Model", "metadata": {"format": "PickleTensor"}, "primary": True},
        {"id": 4, "name": "lora.safetensors", "type": "Model", "metadata": {"format": "SafeTensor"}},
    ]
    assert pick_file(files, ModelType.LORA)["id"] == 4
    assert pick_file(files[:2], ModelType.LORA) is None


def test_thumbs_rating():
    assert thumbs_rating({"thumbsUpCount": 52554, "thumbsDownCount": 17}) == 5.0
    assert thumbs_rating({"thumbsUpCount": 3, "thumbsDownCount": 1}) == 3.75
    assert thumbs_rating({"thumbsUpCount": 0, "thumbsDownCount": 0, "rating": 4.5}) == 4.5
    assert thumbs_rating({"thumbsUpCount": 316}) == 0.0
    assert thumbs_rating({}) == 0.0


def test_html_to_text():
    assert html_to_text("<h1>Title</h1><p>a&amp;b&nbsp;c<br/>next <em>line</em></p><ul><li>x</li><li>y</li></ul>") == (
        "Title\na&b c\nnext line\nx\ny"
    )
    assert html_to_text("") == ""


def test_enum_mapping_matches_the_recorded_civitai_enums():
    """Our filter strings are real CivitAI values, and every real base model maps to something."""
    enums = load("enums.json")
    real_bases = set(enums["BaseModel"])
    for base in BaseModel:
        assert set(base.civitai_names()) <= real_bases, base
    real_types = set(enums["ModelType"]) | {"TextEncoder", "UNet", "CLIPVision", "CLIP"}  # DB-only types
    for kind in ModelType:
        assert set(kind.civitai_names()) <= real_types, kind
    assert BaseModel.from_civitai("SDXL Distilled") is BaseModel.SDXL
    assert BaseModel.from_civitai("Flux.2 Klein 9B-base") is BaseModel.FLUX2
    assert BaseModel.from_civitai("Illustrious") is BaseModel.ILLUSTRIOUS
    assert BaseModel.from_civitai("Wan Video 14B t2v") is BaseModel.OTHER
    for name in enums["BaseModel"]:
        base = BaseModel.from_civitai(name)
        if base not in (BaseModel.OTHER, BaseModel.UNKNOWN):
            assert name in base.civitai_names(), name  # a search for that base finds it
