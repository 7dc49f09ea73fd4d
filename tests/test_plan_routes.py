"""``/hubloader/plan`` in ComfyUI (POST and GET): the install plan as JSON, for the missing-models dialog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from hubloader.faces.jobs import JobManager
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes, sd15_checkpoint
from tests.test_comfyui_routes import Events, comfy, run_app  # noqa: F401  (comfy is a fixture)

pytestmark = pytest.mark.hf

CKPT = safetensors_bytes(sd15_checkpoint(), seed=61)


def test_plan_route_answers_the_plan_for_a_posted_or_queried_workflow(comfy, hub_env):  # noqa: F811
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    lora_dir = Path(comfy.get_folder_paths("loras")[0])
    (lora_dir / "here.safetensors").write_bytes(safetensors_bytes(kohya_lora()))
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    workflow = {
        "nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["base.safetensors"],
             "properties": {"models": [{"name": "base.safetensors", "url": url, "directory": "checkpoints"}]}},
            {"id": 2, "type": "LoraLoader", "mode": 0, "widgets_values": ["here.safetensors", 1, 1]},
        ]
    }  # fmt: skip

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.post("/hubloader/plan", json={"workflow": workflow})
        assert response.status == 200, await response.text()
        plan = await response.json()
        models = {m["name"]: m for m in plan["models"]}
        assert models["base.safetensors"]["status"] == "resolvable" and models["base.safetensors"]["can_fetch"]
        assert models["base.safetensors"]["size"] == len(CKPT)
        assert models["here.safetensors"]["status"] == "present"
        assert plan["can_fetch_all"] and plan["totals"]["bytes_to_fetch"] == len(CKPT)
        assert events == []  # planning queues nothing

        got = await client.get("/hubloader/plan", params={"workflow": json.dumps(workflow)})
        assert got.status == 200 and (await got.json())["counts"] == plan["counts"]
        bad = await client.post("/hubloader/plan", json={"workflow": "not a workflow"})
        assert bad.status == 400 and "JSON object" in (await bad.json())["error"]

    run_app(test)


def test_the_app_face_plans_an_uploaded_workflow(hub_env, tmp_path):
    pytest.importorskip("gradio")
    from hubloader.core.folders import standalone_folders
    from hubloader.faces.hub import ModelHub

    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    workflow = {"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["base.safetensors"],
                           "properties": {"models": [{"name": "base.safetensors", "url": url, "directory": "checkpoints"}]}}]}  # fmt: skip
    plan = ModelHub(standalone_folders(tmp_path / "m")).plan(image=json.dumps(workflow).encode())
    (model,) = plan.models
    assert model.status.value == "resolvable" and model.can_fetch and model.size == len(CKPT)
