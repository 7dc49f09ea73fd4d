"""The names people type find their model; unusable files say so; errors name the model they concern.

Against the loopback fake hubs (tests/fakehub) through the real clients, the real registry on disk and
the real command line in a subprocess.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from hubloader.core.errors import InvalidReference
from hubloader.core.folders import standalone_folders
from hubloader.core.metadata import ModelMetadata, Source
from hubloader.engine import ratelimit
from hubloader.registry import ModelRegistry
from hubloader.sources.civitai import CivitAIService
from hubloader.workflows import Resolver, Status
from tests.fakehub.modelfiles import kohya_lora, kohya_metadata, safetensors_bytes, sdxl_checkpoint
from tests.test_cli import hubloader, json_lines, one_error_line, sha
from tests.workflow_samples import node, ui_workflow

LORA = safetensors_bytes(kohya_lora("sdxl"), kohya_metadata("anime_style", "sdxl"), seed=7)
CHECKPOINT = safetensors_bytes(sdxl_checkpoint(), seed=8)


def add_spec_example(hub) -> tuple[int, int]:
    """The specification's example: a CivitAI LoRA whose version and file are named ``anime_style_v2``."""
    return hub.add_civitai_model(
        "Anime Style",
        version_name="anime_style_v2",
        files=[{"name": "anime_style_v2.safetensors", "data": LORA}],
        trained_words=["anime"],
    )


# --- point 4: the names people type ---------------------------------------------------------------------


def test_a_civitai_model_is_found_by_every_name_people_use(hub_env):
    model_id, version_id = add_spec_example(hub_env)
    with ModelRegistry() as registry:
        lora = registry.register_from_civitai(model_id=model_id)
        key = f"civitai:{model_id}@{version_id}"
        names = [
            key,
            "Anime Style",  # the model's name
            "anime_style_v2",  # the version's name and the file's stem
            "anime_style_v2.safetensors",  # the file's name
            "ANIME_STYLE_V2",  # names are typed in any case
            lora.air,
            sha(LORA),
            sha(LORA)[:12],  # the prefix `hubloader get` prints
            sha(LORA)[:10].upper(),  # AutoV2
            str(lora.local_path),
        ]
        for name in names:
            assert registry.find_model(name) is not None, name
            assert registry.get_model(name).model_id == key, name
        assert registry.find_model("anime_style") is None  # a name is matched whole, not as a prefix


def test_info_finds_the_spec_example_by_its_version_and_file_name(hub_env):
    model_id, version_id = add_spec_example(hub_env)
    with ModelRegistry() as registry:
        registry.register_from_civitai(model_id=model_id)
    for name in ("anime_style_v2", "anime_style_v2.safetensors", sha(LORA)[:12]):
        result = hubloader("info", name)
        assert result.returncode == 0, result.stderr
        assert f"civitai:{model_id}@{version_id}" in result.stdout and "Anime Style" in result.stdout


def test_an_ambiguous_name_lists_the_ids_it_could_mean(hub_env):
    with ModelRegistry() as registry:
        for key in ("civitai:1@11", "civitai:2@22"):
            registry.register_model(ModelMetadata(model_id=key, name="Ink", source=Source.CIVITAI))
        with pytest.raises(InvalidReference) as raised:
            registry.get_model("ink")
    assert "civitai:1@11" in str(raised.value) and "civitai:2@22" in str(raised.value)
    result = hubloader("info", "Ink")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "civitai:1@11" in line and "civitai:2@22" in line


def test_info_of_a_local_path_never_asks_huggingface(hub_env, tmp_path: Path):
    result = hubloader("info", "/x/y.safetensors")
    assert result.returncode == 3
    assert "/x/y.safetensors" in one_error_line(result)
    assert not [r for r in hub_env.requests if r.host == "hf"]

    lora = tmp_path / "loras" / "inkwash.safetensors"
    lora.parent.mkdir()
    lora.write_bytes(LORA)
    assert hubloader("scan", str(lora.parent)).returncode == 0
    found = hubloader("info", str(lora))
    assert found.returncode == 0, found.stderr
    assert "inkwash" in found.stdout and str(lora) in found.stdout
    assert not [r for r in hub_env.requests if r.host == "hf"]


def test_a_path_is_not_a_huggingface_repo_id():
    from hubloader.sources.huggingface import parse_model_id

    for path in ("/x/y.safetensors", "~/models/y.safetensors", "./x/y.safetensors"):
        with pytest.raises(InvalidReference, match="file path"):
            parse_model_id(path)
    assert parse_model_id("x/y.safetensors").repo_id == "x/y.safetensors"


# --- point 10: files that fail inspection are unusable -------------------------------------------------


def header_file(header: bytes, tail: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + tail


INVALID = {
    "truncated": struct.pack("<Q", 4096) + b'{"a": ',
    "not_json": header_file(b"this is not json at all!"),
    "out_of_range": header_file(
        json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 20]}}).encode(), b"\0" * 16
    ),
    "hostile": struct.pack("<Q", 1 << 62) + b"{}",
}


def test_files_that_fail_inspection_are_recorded_unusable(tmp_path: Path):
    folder = tmp_path / "loras"
    folder.mkdir()
    for name, data in INVALID.items():
        (folder / f"{name}.safetensors").write_bytes(data)
    (folder / "good.safetensors").write_bytes(LORA)
    with ModelRegistry() as registry:
        registry.scan([folder])
        for name in INVALID:
            meta = registry.get_model(name)
            assert meta.extra["registry"]["status"] == "invalid", name
            assert meta.extra["error"], name
        assert registry.get_model("good").extra["registry"]["status"] == "ok"
        assert [m.name for m in registry.list_models(local_only=True)] == ["good"]

    listed = {row["name"]: row for row in json_lines(hubloader("list", "--json").stdout)}
    assert {n: r["status"] for n, r in listed.items()} == {**dict.fromkeys(INVALID, "invalid"), "good": "ok"}
    assert all(listed[n]["error"] for n in INVALID) and listed["good"]["error"] is None
    table = hubloader("list").stdout
    assert table.count("invalid (unusable)") == len(INVALID)

    info = hubloader("info", "not_json")
    assert info.returncode == 0, info.stderr
    assert "Status:          ok" not in info.stdout and "other" not in info.stdout
    assert "Status:          invalid" in info.stdout and "Unusable:" in info.stdout


# --- point 12: errors name the model they concern ------------------------------------------------------


@pytest.fixture
def fast_civitai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ratelimit._limiters, "civitai", ratelimit.RateLimiter(200, 50))


def test_a_login_required_file_in_a_resolve_names_its_model_and_service(hub_env, fast_civitai, tmp_path: Path):
    members = safetensors_bytes(sdxl_checkpoint(), seed=9)
    model_id, version_id = hub_env.add_civitai_model(
        "Fake SDXL", type="Checkpoint", files=[{"name": "fakesdxl.safetensors", "data": members}], login_required=True
    )
    hub_env.add_civitai_model("Ink Style", files=[{"name": "ink.safetensors", "data": LORA}])
    graph = ui_workflow(
        [
            node(1, "CheckpointLoaderSimple", ["fake.safetensors"]),
            node(2, "LoraLoader", ["ink.safetensors", 0.8, 1.0]),
        ],
        models=[
            {"name": "fake.safetensors", "hash": sha(members), "hash_type": "SHA256", "directory": "checkpoints"},
            {"name": "ink.safetensors", "hash": sha(LORA), "hash_type": "SHA256", "directory": "loras"},
        ],
    )
    resolver = Resolver(standalone_folders(tmp_path / "models"), civitai=CivitAIService(rate_limit=200), search=False)
    report = resolver.fetch(resolver.resolve(graph))
    statuses = {i.reference.name: i.status for i in report.items}
    assert statuses == {"fake.safetensors": Status.FAILED, "ink.safetensors": Status.FETCHED}, report.to_dict()
    reason = next(i.reason for i in report.items if i.reference.name == "fake.safetensors")
    assert f"Fake SDXL (civitai:{model_id}@{version_id}) needs a CivitAI token" in reason
    assert "HuggingFace" not in reason and "HF_TOKEN" not in reason
