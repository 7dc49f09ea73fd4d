"""ComfyUI's "verify models before a prompt runs", over the comfy stub: off by default; on, a changed LoRA stops the
prompt with the file and both hashes, and unchanged files cost no re-hash."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

from hubloader.core import settings as config
from tests.comfy_stub import folder_paths as stub_folder_paths
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes

LORA = safetensors_bytes(kohya_lora("sd15"), seed=71)


class PromptServer:
    """The two things ComfyUI's PromptServer gives our hook (server.py, v0.3.64): handlers called in turn on each
    POST /prompt body, an exception logged and ignored; and send_sync for websocket events."""

    def __init__(self) -> None:
        self.on_prompt_handlers: list[Any] = []
        self.events: list[tuple[str, dict]] = []

    def add_on_prompt_handler(self, handler: Any) -> None:
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data: dict) -> dict:
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:  # as ComfyUI: a failing handler does not stop the prompt
                pass
        return json_data

    def send_sync(self, event: str, data: dict) -> None:
        self.events.append((event, data))


@pytest.fixture
def comfy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stub_folder_paths.setup(tmp_path / "comfy")
    monkeypatch.setitem(sys.modules, "folder_paths", stub_folder_paths)
    from nodes import verify

    monkeypatch.setattr(verify, "_hashes", None)  # a fresh cache object per test (its file is per test already)
    server = PromptServer()
    verify.register(server)
    return server


def body(digest: str) -> dict:
    workflow = {
        "nodes": [
            {"id": 1, "type": "LoraLoader", "mode": 0, "widgets_values": ["ink.safetensors", 1, 1],
             "properties": {"models": [{"name": "ink.safetensors", "directory": "loras", "hash": digest,
                                        "hash_type": "SHA256"}]}},
        ]
    }  # fmt: skip
    prompt = {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors"}}}
    return {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": workflow}}}


def lora_path() -> Path:
    path = Path(stub_folder_paths.get_folder_paths("loras")[0]) / "ink.safetensors"
    path.write_bytes(LORA)
    return path


def test_off_by_default(comfy):
    lora_path().write_bytes(b"changed")
    sent = body(hashlib.sha256(LORA).hexdigest())
    assert comfy.trigger_on_prompt(sent) == sent


def test_a_changed_lora_stops_the_prompt_and_unchanged_files_cost_no_rehash(comfy):
    from nodes import verify

    config.save_settings({"verify_before_prompt": True})
    path = lora_path()
    pinned = hashlib.sha256(LORA).hexdigest()
    sent = body(pinned)
    assert comfy.trigger_on_prompt(sent) == sent  # same bytes: the prompt goes on untouched
    assert verify._cache().hashed == 1
    assert comfy.trigger_on_prompt(sent) == sent
    assert verify._cache().hashed == 1  # the second prompt re-hashed nothing

    path.write_bytes(LORA[:-1] + b"\x02")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    answer = comfy.trigger_on_prompt(body(pinned))
    (refusal,) = answer["prompt"]  # the prompt ComfyUI will refuse, our message as the refusal's detail
    assert str(path) in refusal and pinned in refusal and actual in refusal
    assert "class_type" not in answer["prompt"][refusal]
    (event,) = comfy.events
    assert event[0] == "hubloader.verify_failed" and pinned in event[1]["message"]


def test_a_workflow_without_hashes_is_not_checked(comfy):
    config.save_settings({"verify_before_prompt": True})
    lora_path()
    sent = {"prompt": {"1": {"class_type": "LoraLoader", "inputs": {}}}, "extra_data": {}}
    assert comfy.trigger_on_prompt(sent) == sent
