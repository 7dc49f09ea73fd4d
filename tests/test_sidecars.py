"""Sidecars: A1111 json merge/round trips, previews, frozen source metadata, other tools' files, triggers."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from hubloader.core.errors import InvalidFile
from hubloader.core.metadata import BaseModel, ModelMetadata, Source
from hubloader.core.triggers import (
    resolve_usage,
    training_tags,
    usage_from_record,
    weight_in_text,
    weights_from_civitai,
)
from hubloader.library.sidecars import (
    A1111_KEYS,
    a1111_values,
    find_preview,
    freeze_source_metadata,
    read_a1111,
    read_frozen,
    read_sidecars,
    write_a1111,
    write_preview,
)
from tests.fakehub import modelfiles as mf

FIXTURES = Path(__file__).parent / "fixtures" / "sidecars"
STEM = "pp-storybook_rank2_bf16"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return mf.write_safetensors(tmp_path / f"{STEM}.safetensors", mf.kohya_flux_lora())


def _version() -> dict:
    return json.loads((FIXTURES / f"{STEM}.civitai.info").read_text())


# --- the recorded fixtures -------------------------------------------------------------------------


def test_fixture_sidecars_give_trigger_base_and_weight(model: Path) -> None:
    for name in (f"{STEM}.json", f"{STEM}.civitai.info"):
        shutil.copy(FIXTURES / name, model.parent / name)

    sidecars = read_sidecars(model)
    usage = resolve_usage(a1111=sidecars.a1111, civitai=sidecars.civitai_version())

    assert usage.trigger_words == ["ppstorybook"]
    assert (usage.weight.value, usage.weight.source, usage.weight.field) == (0.8, "sidecar", "preferred weight")
    assert sidecars.base_claims()[0] == (BaseModel.FLUX1, "civitai")
    assert sidecars.civitai_version()["id"] == 1387174


def test_civitai_version_alone_gives_triggers_but_no_invented_weight() -> None:
    usage = resolve_usage(civitai=_version())
    assert (usage.trigger_words, usage.triggers.source) == (["ppstorybook"], "civitai")
    assert usage.weight is None  # the recorded version states no strength anywhere


# --- A1111 json ------------------------------------------------------------------------------------


def test_write_a1111_has_exactly_the_editor_keys_and_its_format(model: Path) -> None:
    meta = ModelMetadata(
        model_id="1231067",
        version_id="1387174",
        name="Storybook",
        source=Source.CIVITAI,
        base_model=BaseModel.FLUX1,
        trigger_words=["ppstorybook", "storybook style"],
        recommended_weight=0.8,
    )
    written = write_a1111(model, a1111_values(meta))

    path = model.with_suffix(".json")
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk == written
    assert tuple(on_disk) == A1111_KEYS
    assert on_disk["sd version"] == "Flux"
    assert on_disk["activation text"] == "ppstorybook, storybook style"
    assert on_disk["preferred weight"] == 0.8
    assert on_disk["notes"].endswith("/models/1231067?modelVersionId=1387174")
    assert path.read_text(encoding="utf-8").startswith('{\n    "description"')  # indent=4 like A1111


def test_merge_never_clobbers_user_edits_but_updates_our_own_values(model: Path) -> None:
    write_a1111(model, {"activation text": "ppstorybook", "preferred weight": 0.8, "description": "from civitai"})
    # The user edits two fields in A1111's editor and another tool adds a key.
    path = model.with_suffix(".json")
    data = json.loads(path.read_text())
    data.update({"activation text": "ppstorybook, my extra", "notes": "my notes", "civitai model id": 1231067})
    path.write_text(json.dumps(data, indent=4))

    merged = write_a1111(
        model, {"activation text": "new trigger", "description": "updated upstream", "preferred weight": 1.0}
    )

    assert merged["activation text"] == "ppstorybook, my extra"  # user's edit kept
    assert merged["notes"] == "my notes"
    assert merged["civitai model id"] == 1231067  # other tool's key kept
    assert merged["description"] == "updated upstream"  # still ours: refreshed
    assert merged["preferred weight"] == 1.0
    assert write_a1111(model, {"activation text": "forced"}, overwrite=True)["activation text"] == "forced"


def test_fixture_a1111_round_trip(model: Path) -> None:
    shutil.copy(FIXTURES / f"{STEM}.json", model.with_suffix(".json"))
    original = read_a1111(model)
    assert write_a1111(model, {"activation text": "other", "preferred weight": 1.0}) == original
    assert read_a1111(model) == original


def test_broken_sidecars_are_ignored_not_fatal(model: Path) -> None:
    model.with_suffix(".json").write_text("{not json")
    model.with_name(f"{STEM}.civitai.info").write_text("{}")  # Civitai Helper's "not found" skeleton
    sidecars = read_sidecars(model)
    assert sidecars.a1111 is None and sidecars.civitai_info is None
    assert write_a1111(model, {"activation text": "x"})["activation text"] == "x"


# --- frozen copy -----------------------------------------------------------------------------------


def test_frozen_source_metadata_survives_later_refreshes(model: Path) -> None:
    version = _version()
    freeze_source_metadata(model, Source.CIVITAI, version)
    freeze_source_metadata(model, Source.CIVITAI, {**version, "trainedWords": [], "description": "deleted"})

    record = read_frozen(model)
    assert record["source_metadata"] == version
    assert record["source"] == "civitai" and record["saved_at"]
    sidecars = read_sidecars(model)
    assert sidecars.civitai_version() == version  # used when no .civitai.info exists
    assert resolve_usage(civitai=sidecars.civitai_version()).trigger_words == ["ppstorybook"]


# --- other tools -----------------------------------------------------------------------------------


def test_lora_manager_metadata(model: Path) -> None:
    model.with_name(f"{STEM}.metadata.json").write_text(
        json.dumps(
            {
                "file_name": STEM,
                "sha256": "9753338ab693ca82bf89ed77a5d1912879e40051463ec6e330fb9866ce798668",
                "base_model": "Flux.1 D",
                "usage_tips": json.dumps({"strength": 0.7, "strength_min": 0.5}),
                "civitai": {"id": 1387174, "trainedWords": ["ppstorybook"], "baseModel": "Flux.1 D"},
            }
        )
    )
    sidecars = read_sidecars(model)
    usage = resolve_usage(civitai=sidecars.civitai_version(), lora_manager=sidecars.lora_manager)
    assert usage.trigger_words == ["ppstorybook"]
    assert (usage.weight.value, usage.weight.field) == (0.7, "usage_tips.strength")
    assert sidecars.base_claims()[0][0] is BaseModel.FLUX1


# --- previews --------------------------------------------------------------------------------------


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_preview_is_written_as_png_where_a1111_looks(model: Path, fmt: str) -> None:
    path = write_preview(model, _image(fmt))
    assert path.name == f"{STEM}.preview.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert find_preview(model) == path
    with Image.open(path) as img:
        assert img.getpixel((0, 0))[0] > 150


def test_existing_preview_is_kept_and_non_images_refused(model: Path) -> None:
    user = model.with_name(f"{STEM}.jpg")
    user.write_bytes(_image("JPEG"))
    assert write_preview(model, _image("PNG")) == user
    assert not model.with_name(f"{STEM}.preview.png").exists()
    with pytest.raises(InvalidFile):
        write_preview(model, b"<html>login</html>", overwrite=True)
    assert sorted(p.name for p in model.parent.iterdir()) == sorted([model.name, user.name])


# --- trigger words and weights with provenance -----------------------------------------------------


def test_header_triggers_and_training_tags_are_kept_apart() -> None:
    header = mf.kohya_metadata(
        "soraka",
        tag_frequency={"10_soraka": {"soraka_classic": 38, "1girl": 46, "solo": 40}, "5_extra": {"1girl": 3}},
        **{"modelspec.trigger_phrase": "soraka_classic, horn"},
    )
    usage = resolve_usage(header=header)
    assert (usage.trigger_words, usage.triggers.source, usage.triggers.field) == (
        ["soraka_classic", "horn"],
        "modelspec",
        "modelspec.trigger_phrase",
    )
    assert usage.training_tags == ["1girl", "solo", "soraka_classic"]
    assert "1girl" not in usage.trigger_words


@pytest.mark.parametrize(
    "header, words, field",
    [
        ({"ss_trigger_words": '["tok1", "tok2"]'}, ["tok1", "tok2"], "ss_trigger_words"),
        ({"ss_trigger_words": "None", "ssmd_keywords": "kw1, kw2"}, ["kw1", "kw2"], "ssmd_keywords"),
    ],
)
def test_kohya_trigger_keys(header: dict, words: list[str], field: str) -> None:
    usage = resolve_usage(header=header)
    assert (usage.trigger_words, usage.triggers.source, usage.triggers.field) == (words, "kohya", field)


def test_training_tags_tolerate_bad_json() -> None:
    assert training_tags({"ss_tag_frequency": "{oops"}) == []
    assert training_tags({"ss_tag_frequency": '["not", "a dict"]'}) == []


def test_weight_precedence() -> None:
    version = {
        "id": 7,
        "settings": {"strength": 0.6},
        "description": "<p>Strength: 0.8, experiment as you like</p>",
        "files": [{"name": "mylora.safetensors"}],
        "images": [
            {"meta": {"prompt": "a cat <lora:mylora:0.5>"}},
            {"meta": {"civitaiResources": [{"modelVersionId": 7, "weight": 0.7}]}},
            {"meta": {"resources": [{"name": "mylora", "weight": 0.9}, {"name": "other", "weight": 0.1}]}},
        ],
    }
    sources = [(w.value, w.source) for w in weights_from_civitai(version)]
    assert sources == [(0.6, "civitai.settings"), (0.8, "civitai.description"), (0.7, "civitai.images")]
    hint = {"modelspec.usage_hint": "use at weight 0.75"}
    assert resolve_usage(civitai=version, header=hint).weight.source == "civitai.settings"
    del version["settings"]
    assert resolve_usage(civitai=version, header=hint).weight == resolve_usage(header=hint).weight
    assert resolve_usage(header=hint).weight.value == 0.75
    assert resolve_usage(civitai=version, a1111={"preferred weight": 0}).weight.source == "civitai.description"
    assert resolve_usage(civitai=version, user_weight=1.1).weight.source == "user"


@pytest.mark.parametrize(
    "text, weight",
    [
        ("Strength: 0.8, experiment as you like", 0.8),
        ("recommended weight 0.6-0.9", 0.6),
        ("<p>use <lora:x:0.65></p>", 0.65),
        ("Hires denoising strength: 0.05~0.5", None),
        ("CFG 7, 30 steps", None),
        ("", None),
    ],
)
def test_weight_in_text(text: str, weight: float | None) -> None:
    assert weight_in_text(text) == weight


def test_write_download_sidecars_end_to_end(model: Path) -> None:
    version = _version()
    meta = ModelMetadata(
        model_id="1231067",
        version_id="1387174",
        name="Vivid Impressions Storybook Style",
        source=Source.CIVITAI,
        base_model=BaseModel.from_civitai(version["baseModel"]),
        trigger_words=version["trainedWords"],
    )
    from hubloader.library.sidecars import write_download_sidecars

    sidecars = write_download_sidecars(model, meta, raw=version, preview=_image("JPEG"))

    assert sidecars.a1111["activation text"] == "ppstorybook" and sidecars.a1111["sd version"] == "Flux"
    assert sidecars.a1111["preferred weight"] == 0  # unknown stays unset, never invented
    assert sidecars.frozen["source_metadata"] == version
    assert sidecars.frozen["metadata"]["version_id"] == "1387174"
    assert sidecars.preview == model.with_name(f"{STEM}.preview.png")
    assert write_download_sidecars(model, meta, preview=b"not an image").preview == sidecars.preview


def test_a_frozen_record_states_only_what_a_source_said() -> None:
    record = {"trigger_words": ["ppstorybook"], "trigger_words_source": "civitai", "recommended_weight": 0.8}
    usage = usage_from_record({**record, "recommended_weight_source": "civitai.images"})
    assert (usage.triggers.value, usage.triggers.source, usage.weight.value) == (["ppstorybook"], "civitai", 0.8)
    # Words the user had typed before the download are the user's, not the source's: never brought back as such.
    mine = usage_from_record({**record, "trigger_words_source": "sidecar", "recommended_weight_source": "user"})
    assert (mine.triggers, mine.weight) == (None, None)


def test_notes_link_is_the_civitai_model_page_with_numbers_not_our_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVITAI_ENDPOINT", "https://civitai.com")
    meta = ModelMetadata(model_id="civitai:9000002@9000003", version_id="9000003", name="Ink", source=Source.CIVITAI)
    assert a1111_values(meta)["notes"] == "https://civitai.com/models/9000002?modelVersionId=9000003"
    meta.extra["civitai_model_id"] = 9000002  # as CivitAIService records it
    assert a1111_values(meta)["notes"] == "https://civitai.com/models/9000002?modelVersionId=9000003"


def test_notes_link_of_a_huggingface_file_is_its_blob_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from hubloader.core.metadata import ModelFile

    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.co")
    meta = ModelMetadata(
        model_id="ink/inkwash-xl/loras/inkwash.safetensors",
        name="inkwash.safetensors",
        source=Source.HUGGINGFACE,
        files=[ModelFile(name="loras/inkwash.safetensors")],
    )
    assert a1111_values(meta)["notes"] == "https://huggingface.co/ink/inkwash-xl/blob/main/loras/inkwash.safetensors"
    meta.version = "0123456789abcdef0123456789abcdef01234567"
    assert a1111_values(meta)["notes"] == (
        "https://huggingface.co/ink/inkwash-xl/blob/0123456789abcdef0123456789abcdef01234567/loras/inkwash.safetensors"
    )
    meta.files = []  # a file id without its file list: the repo is owner/name
    meta.model_id = "ink/inkwash-xl/inkwash.safetensors"
    assert a1111_values(meta)["notes"].endswith(
        "/ink/inkwash-xl/blob/0123456789abcdef0123456789abcdef01234567/inkwash.safetensors"
    )
    repo = ModelMetadata(model_id="ink/inkwash-xl", name="inkwash-xl", source=Source.HUGGINGFACE)
    assert a1111_values(repo)["notes"] == "https://huggingface.co/ink/inkwash-xl"
