"""Issue 19 point 10, the faces beyond the CLI: a file that fails inspection is recorded invalid with its reason,
and the Python API, the app's Library table and the ComfyUI loader choices show it as unusable (never as a usable
model of type ``other``). The CLI's ``info``/``list`` are covered in tests/test_model_names.py."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from hubloader.core.folders import standalone_folders
from hubloader.registry import ModelRegistry
from tests.comfy_stub import folder_paths as stub_folder_paths
from tests.fakehub import modelfiles as mf


def header_file(header: bytes, tail: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + tail


#: Each way a header fails: truncated, not JSON, offsets out of range, a hostile length.
BROKEN = {
    "truncated.safetensors": struct.pack("<Q", 4096) + b'{"a": ',
    "not_json.safetensors": header_file(b"this is not json at all!"),
    "out_of_range.safetensors": header_file(
        json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 20]}}).encode(), b"\0" * 16
    ),
    "hostile.safetensors": struct.pack("<Q", 1 << 62) + b"{}",
}


def fill(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in BROKEN.items():
        (folder / name).write_bytes(data)
    mf.write_safetensors(folder / "good.safetensors", mf.kohya_lora("sd15"), mf.kohya_metadata("good"))


def test_the_api_lists_unusable_files_with_their_reason_only_when_asked(tmp_path: Path) -> None:
    folder = tmp_path / "loras"
    fill(folder)
    with ModelRegistry() as registry:
        registry.scan([folder])
        assert [m.name for m in registry.list_models(local_only=True)] == ["good"]
        listed = registry.list_models(local_only=True, include_unusable=True)
        states = {m.name: m.extra["registry"]["status"] for m in listed}
        assert states == {**{Path(n).stem: "invalid" for n in BROKEN}, "good": "ok"}
        unusable = registry.unusable_files()
        assert set(unusable) == {str(folder / n) for n in BROKEN}
        assert all(reason and Path(path).name in reason for path, reason in unusable.items())
        (folder / "hostile.safetensors").unlink()  # gone from disk: no longer listed
        listed = registry.list_models(local_only=True, include_unusable=True)
        assert "hostile" not in {m.name for m in listed}


def test_the_app_library_shows_unusable_files_and_why(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from hubloader.faces import app as ui

    hub = ui.ModelHub(standalone_folders(tmp_path / "models"))
    try:
        fill(tmp_path / "models" / "loras")
        assert "4 unreadable" in hub.rescan()
        rows, summary = hub.library("loras")
        by_file = {Path(r[-1]).name: r for r in rows}
        assert set(by_file) == {*BROKEN, "good.safetensors"}
        for name in BROKEN:
            row = by_file[name]
            assert row[1] == "unusable" and row[1] != "other", row
            assert name in row[5]  # the reason names the file
        assert by_file["good.safetensors"][1] == "lora"
        assert summary.startswith("1 local models") and "4 unusable (failed inspection)" in summary
        assert not hub.library("checkpoints")[0]  # an unusable LoRA is not listed under another folder
    finally:
        hub.jobs.shutdown()


@pytest.fixture
def comfy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stub_folder_paths.setup(tmp_path / "comfy")
    monkeypatch.setitem(sys.modules, "folder_paths", stub_folder_paths)
    return stub_folder_paths


def test_comfyui_loader_choices_mark_unusable_files_and_refuse_them(comfy) -> None:
    from nodes import loaders

    loras = Path(comfy.get_folder_paths("loras")[0])
    fill(loras)
    checkpoints = Path(comfy.get_folder_paths("checkpoints")[0])
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "not_json.safetensors").write_bytes(mf.safetensors_bytes(mf.sdxl_checkpoint()))  # same name, fine
    before = loaders.HubLoraLoader.INPUT_TYPES()["required"]["lora_name"][0]
    assert sorted(before) == sorted([*BROKEN, "good.safetensors"])  # no index yet: nothing is marked, none created

    with ModelRegistry() as registry:
        registry.scan([loras, checkpoints])
    choices = loaders.HubLoraLoader.INPUT_TYPES()["required"]["lora_name"][0]
    assert sorted(choices) == sorted([*(n + loaders.UNUSABLE for n in BROKEN), "good.safetensors"])
    assert loaders.HubCheckpointLoader.INPUT_TYPES()["required"]["ckpt_name"][0] == ["not_json.safetensors"]
    refused = loaders.HubLoraLoader.VALIDATE_INPUTS("not_json.safetensors" + loaders.UNUSABLE, "")
    assert isinstance(refused, str) and "failed inspection" in refused
    assert loaders.HubLoraLoader.VALIDATE_INPUTS("good.safetensors", "") is True
