"""Missing models resolved through CivitAI: by hash (batched), by URL/AIR, by file name; fetched and verified.

Everything speaks real HTTP to the loopback fake CivitAI (tests/fakehub/civitai.py) through the real
CivitAIService and download engine; the model folders, registry and lockfiles are real files.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from hubloader.core.folders import standalone_folders
from hubloader.engine import ratelimit
from hubloader.sources.civitai import CivitAIService
from hubloader.workflows import Resolver, Status
from hubloader.workflows.lockfile import lock, resolve_lockfile
from tests.fakehub.modelfiles import embedding, kohya_lora, kohya_metadata, safetensors_bytes, sdxl_checkpoint
from tests.workflow_samples import node, save_png, ui_workflow

pytestmark = pytest.mark.hf  # search by name also asks HuggingFace through huggingface_hub

ROOT = Path(__file__).resolve().parents[1]

CHECKPOINT = safetensors_bytes(sdxl_checkpoint(), seed=101)
LORA = safetensors_bytes(kohya_lora("sdxl"), kohya_metadata("ink_style", "sdxl"), seed=102)
EMBEDDING = safetensors_bytes(embedding("sdxl"), seed=103)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def autov2(data: bytes) -> str:
    return sha256(data)[:10]


def autov3(data: bytes) -> str:
    """The kohya "addnet" hash A1111 writes in ``Lora hashes``: tensor data only, first 12 hex."""
    (header,) = struct.unpack("<Q", data[:8])
    return sha256(data[8 + header :])[:12]


@pytest.fixture
def hub(hub_env):
    """The fake CivitAI with a checkpoint, a LoRA and an embedding whose CivitAI file names differ from the
    names workflows use for them (as after a user renames a download)."""
    hub_env.ids = {
        "checkpoint": hub_env.add_civitai_model(
            "Juggernaut XL",
            type="Checkpoint",
            files=[{"name": "juggernautXL_v9.safetensors", "data": CHECKPOINT}],
        ),
        "lora": hub_env.add_civitai_model(
            "Ink Style", files=[{"name": "inkStyle_v10.safetensors", "data": LORA}], trained_words=["ink style"]
        ),
        "embedding": hub_env.add_civitai_model(
            "EasyNegative", type="TextualInversion", files=[{"name": "easynegative.safetensors", "data": EMBEDDING}]
        ),
    }
    return hub_env


@pytest.fixture(autouse=True)
def fast_civitai_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The download engine paces CivitAI at 1 request/s process-wide; these tests need no politeness."""
    monkeypatch.setitem(ratelimit._limiters, "civitai", ratelimit.RateLimiter(200, 50))


def resolver_for(root: Path, **options) -> Resolver:
    return Resolver(standalone_folders(root), civitai=CivitAIService(rate_limit=200), **options)


def civitai_calls(hub, path_part: str, method: str = "GET") -> list:
    return [r for r in hub.requests if r.host == "civitai" and r.method == method and path_part in r.path]


def item_named(report, name: str):
    return next(i for i in report.items if i.reference.name == name)


# --- by hash ------------------------------------------------------------------------------------------


def test_ui_workflow_resolves_by_hash_in_one_batched_request_and_fetches_verified(hub, tmp_path: Path):
    graph = ui_workflow(
        [
            node(
                1,
                "CheckpointLoaderSimple",
                ["sdxl/juggernaut.safetensors"],
                models=[{"name": "sdxl/juggernaut.safetensors", "hash": autov2(CHECKPOINT), "hash_type": "AutoV2"}],
            ),
            node(
                2,
                "LoraLoader",
                ["ink.safetensors", 0.8, 1.0],
                models=[{"name": "ink.safetensors", "hash": sha256(LORA).upper(), "hash_type": "SHA256"}],
            ),
            node(
                3,
                "LoraLoaderModelOnly",
                ["unknown_to_everyone.safetensors", 1.0],
                models=[{"name": "unknown_to_everyone.safetensors", "hash": "ab" * 32, "hash_type": "SHA256"}],
            ),
        ]
    )
    root = tmp_path / "models"
    resolver = resolver_for(root, search=False)
    report = resolver.resolve(graph)

    # The two SHA256s in one POST; the AutoV2 alone (CivitAI's batch takes SHA256s only, and one short hash
    # would make it refuse the whole request).
    assert len(civitai_calls(hub, "/api/v1/model-versions/by-hash", "POST")) == 1
    singles = civitai_calls(hub, "/api/v1/model-versions/by-hash/")
    assert [c.path for c in singles] == [f"/api/v1/model-versions/by-hash/{autov2(CHECKPOINT).upper()}"]

    checkpoint, lora = item_named(report, "sdxl/juggernaut.safetensors"), item_named(report, "ink.safetensors")
    for item, data, (model_id, version_id) in (
        (checkpoint, CHECKPOINT, hub.ids["checkpoint"]),
        (lora, LORA, hub.ids["lora"]),
    ):
        assert item.status is Status.RESOLVED, item.to_dict()
        assert item.chosen.source == "civitai" and item.chosen.confidence >= 0.9
        assert item.chosen.sha256 == sha256(data) and item.sha256 == sha256(data)
        assert item.chosen.air.endswith(f":civitai:{model_id}@{version_id}")
        assert item.chosen.url.startswith(hub.civitai_url + "/api/download/models/")
    assert "AutoV2" in checkpoint.reason and "SHA256" in lora.reason

    unknown = item_named(report, "unknown_to_everyone.safetensors")
    assert unknown.status is Status.UNRESOLVED and "CivitAI does not know its hash" in unknown.reason

    resolver.fetch(report)
    assert checkpoint.status is Status.FETCHED and lora.status is Status.FETCHED, report.to_dict()
    # The workflow's names and subfolders are kept: that is what its loaders will ask for.
    assert (root / "checkpoints" / "sdxl" / "juggernaut.safetensors").read_bytes() == CHECKPOINT
    assert (root / "loras" / "ink.safetensors").read_bytes() == LORA
    assert checkpoint.use_as == os.path.join("sdxl", "juggernaut.safetensors")
    assert checkpoint.sha256 == sha256(CHECKPOINT)
    assert not list(root.rglob("*.part"))

    # Present now: a second look asks CivitAI nothing about them.
    hub.requests.clear()
    again = resolver.resolve(graph)
    assert item_named(again, "ink.safetensors").status is Status.FOUND
    assert item_named(again, "sdxl/juggernaut.safetensors").status is Status.FOUND
    assert not civitai_calls(hub, "/api/download/")


INFOTEXT = (
    "a cat in ink <lora:ink_style:0.7>, easynegative\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 1024x1024, "
    f"Model hash: {autov2(CHECKPOINT)}, Model: juggernaut_xl, "
    f'Lora hashes: "ink_style: {autov3(LORA)}", TI hashes: "easynegative: {sha256(EMBEDDING)[:12]}", Version: v1.10.1'
)


def test_a1111_infotext_resolves_by_hash_and_fetches(hub, tmp_path: Path):
    root = tmp_path / "models"
    resolver = resolver_for(root)
    report = resolver.resolve(INFOTEXT)
    # An infotext carries short hashes only (AutoV2): CivitAI's batch refuses them, so each is asked alone.
    assert civitai_calls(hub, "/api/v1/model-versions/by-hash", "POST") == []
    assert len(civitai_calls(hub, "/api/v1/model-versions/by-hash/")) == 3

    checkpoint, lora, ti = (item_named(report, n) for n in ("juggernaut_xl", "ink_style", "easynegative"))
    assert checkpoint.reference.kind == "checkpoints" and checkpoint.reference.hashes == {"AutoV2": autov2(CHECKPOINT)}
    assert lora.reference.kind == "loras" and lora.reference.hashes == {"AutoV3": autov3(LORA)}
    # TI hashes are SHA256 prefixes, which CivitAI cannot look up: found by name, confirmed by the prefix.
    assert ti.reference.kind == "embeddings" and ti.reference.hashes == {"SHA256": sha256(EMBEDDING)[:12]}
    for item, data in ((checkpoint, CHECKPOINT), (lora, LORA), (ti, EMBEDDING)):
        assert item.status is Status.RESOLVED, item.to_dict()
        assert item.chosen.source == "civitai" and item.chosen.sha256 == sha256(data)
        assert item.chosen.confidence >= 0.9, item.to_dict()
    assert "CivitAI knows AutoV2" in checkpoint.reason and "CivitAI knows AutoV3" in lora.reason
    assert "CivitAI search for 'easynegative'" in ti.reason and "SHA256 agrees" in ti.reason

    resolver.fetch(report)
    assert report.counts()["fetched"] == 3, report.to_dict()
    # Infotext names carry no extension: the files land under their CivitAI names, in their kinds' folders.
    assert (root / "checkpoints" / "juggernautXL_v9.safetensors").read_bytes() == CHECKPOINT
    assert (root / "loras" / "inkStyle_v10.safetensors").read_bytes() == LORA
    assert (root / "embeddings" / "easynegative.safetensors").read_bytes() == EMBEDDING


# --- by URL / AIR -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://civitai.com/models/{model}?modelVersionId={version}",
        "https://civitai.com/models/{model}/ink-style",
        "https://civitai.com/api/download/models/{version}",
        "{endpoint}/api/download/models/{version}?type=Model&format=SafeTensor",
        "urn:air:sdxl:lora:civitai:{model}@{version}",
    ],
    ids=["page", "page-latest", "download", "download-endpoint", "air"],
)
def test_civitai_url_or_air_in_the_workflow_resolves_and_fetches(hub, tmp_path: Path, url: str):
    model_id, version_id = hub.ids["lora"]
    url = url.format(model=model_id, version=version_id, endpoint=hub.civitai_url)
    entry = {"name": "ink.safetensors", "url": url, "directory": "loras"}
    graph = ui_workflow([node(1, "LoraLoader", ["ink.safetensors", 1.0, 1.0], models=[entry])])
    root = tmp_path / "models"
    report = resolver_for(root, search=False).run(graph, download=True)
    (item,) = report.items
    assert item.status is Status.FETCHED, item.to_dict()
    assert item.chosen.source == "civitai" and item.chosen.confidence >= 0.9
    assert item.chosen.sha256 == item.sha256 == sha256(LORA)
    assert (root / "loras" / "ink.safetensors").read_bytes() == LORA
    assert civitai_calls(hub, "/api/v1/model-versions/by-hash", "POST") == []  # the URL was enough


def test_a_url_or_air_naming_one_file_of_a_version_fetches_that_file(hub, tmp_path: Path):
    """``+fileId`` in an AIR and ``?type=…&fp=…`` in a download URL pick a file that is not the primary one."""
    full = safetensors_bytes(sdxl_checkpoint(), seed=104)
    model_id, version_id = hub.add_civitai_model(
        "Two Files",
        type="Checkpoint",
        files=[
            {"name": "twoFiles_fp16.safetensors", "data": CHECKPOINT, "fp": "fp16", "primary": True},
            {"name": "twoFiles_fp32.safetensors", "data": full, "fp": "fp32"},
        ],
    )
    file_id = CivitAIService(rate_limit=200).get_model_version(version_id).extra["civitai_files"][1]["id"]
    urls = {
        "air.safetensors": f"urn:air:sdxl:checkpoint:civitai:{model_id}@{version_id}+{file_id}",
        "download.safetensors": f"https://civitai.com/api/download/models/{version_id}?type=Model&fp=fp32",
    }
    graph = ui_workflow(
        [
            node(i, "CheckpointLoaderSimple", [name], models=[{"name": name, "url": url, "hash": sha256(full)}])
            for i, (name, url) in enumerate(urls.items(), 1)
        ]
    )
    root = tmp_path / "models"
    report = resolver_for(root, search=False).run(graph, download=True)
    for name in urls:
        item = item_named(report, name)
        assert item.status is Status.FETCHED, item.to_dict()
        assert item.chosen.file_name == "twoFiles_fp32.safetensors"
        assert (root / "checkpoints" / name).read_bytes() == full


# --- by name ------------------------------------------------------------------------------------------


def test_a_file_known_only_by_name_resolves_by_search_with_lower_confidence(hub, tmp_path: Path):
    graph = ui_workflow([node(1, "LoraLoader", ["inkStyle_v10.safetensors", 1.0, 1.0])])
    root = tmp_path / "models"
    report = resolver_for(root).resolve(graph)
    (item,) = report.items
    assert item.status is Status.RESOLVED, item.to_dict()
    assert item.chosen.source == "civitai" and 0.5 <= item.chosen.confidence < 0.9
    assert "CivitAI search" in item.chosen.evidence and "Ink Style" in item.chosen.evidence
    assert item.chosen.sha256 == sha256(LORA)
    assert civitai_calls(hub, "/api/v1/models")  # it searched

    resolver_for(root).fetch(report)
    assert item.status is Status.FETCHED and (root / "loras" / "inkStyle_v10.safetensors").read_bytes() == LORA


def test_unknown_or_ambiguous_names_stay_unresolved_with_a_reason(hub, tmp_path: Path):
    # Two CivitAI models publish a file with this very name: the resolver must not pick one blindly.
    for creator in ("alice", "bob"):
        hub.add_civitai_model(f"Detail Tweaker by {creator}", files=[{"name": "detail_tweaker.safetensors"}])
    graph = ui_workflow(
        [
            node(1, "LoraLoader", ["no_such_lora.safetensors", 1.0, 1.0]),
            node(2, "LoraLoader", ["detail_tweaker.safetensors", 1.0, 1.0]),
        ]
    )
    root = tmp_path / "models"
    report = resolver_for(root).run(graph, download=True)
    unknown, ambiguous = (
        item_named(report, "no_such_lora.safetensors"),
        item_named(report, "detail_tweaker.safetensors"),
    )
    assert unknown.status is Status.UNRESOLVED
    assert "no CivitAI or HuggingFace result has a file named 'no_such_lora.safetensors'" in unknown.reason
    assert ambiguous.status is Status.UNRESOLVED, ambiguous.to_dict()
    assert "detail_tweaker.safetensors" in ambiguous.reason and len(ambiguous.candidates) == 2
    assert not (root / "loras").exists() or not list((root / "loras").iterdir())


# --- refusals -----------------------------------------------------------------------------------------


def test_a_civitai_file_whose_sha256_differs_from_the_workflow_is_refused(hub, tmp_path: Path):
    model_id, version_id = hub.ids["lora"]
    wrong = sha256(b"the file the workflow author had")
    entry = {
        "name": "ink.safetensors",
        "url": f"https://civitai.com/models/{model_id}?modelVersionId={version_id}",
        "hash": wrong,
        "hash_type": "SHA256",
    }
    graph = ui_workflow([node(1, "LoraLoader", ["ink.safetensors", 1.0, 1.0], models=[entry])])
    root = tmp_path / "models"
    report = resolver_for(root).run(graph, download=True)
    (item,) = report.items
    assert item.status is Status.FAILED and "SHA256" in item.reason, item.to_dict()
    assert wrong[:12] in item.reason and sha256(LORA)[:12] in item.reason
    assert not (root / "loras" / "ink.safetensors").exists()
    assert not list(root.rglob("*.safetensors*"))  # no .part left behind either
    assert not civitai_calls(hub, "/api/download/")  # refused before a byte was asked for


def test_a_name_match_whose_sha256_contradicts_the_workflow_hash_is_not_taken(hub, tmp_path: Path):
    """The file is found by name, but the workflow's AutoV2 says it is another file (another version, a
    re-upload): it is not resolved, and nothing is downloaded."""
    graph = ui_workflow(
        [
            node(
                1,
                "LoraLoader",
                ["inkStyle_v10.safetensors", 1.0, 1.0],
                models=[{"name": "inkStyle_v10.safetensors", "hash": "0123456789", "hash_type": "AutoV2"}],
            )
        ]
    )
    root = tmp_path / "models"
    report = resolver_for(root).run(graph, download=True)
    (item,) = report.items
    assert item.status is Status.UNRESOLVED, item.to_dict()
    assert "CivitAI does not know its hash" in item.reason
    assert f"its SHA256 {sha256(LORA)[:12]}… is not the AutoV2 0123456789 given" in item.reason
    assert not civitai_calls(hub, "/api/download/") and not root.exists()


def test_bytes_that_differ_from_the_civitai_sha256_are_refused_and_nothing_is_placed(hub, tmp_path: Path):
    hub.faults.wrong_bytes = 4096  # the CDN serves damaged bytes under CivitAI's published SHA256
    graph = ui_workflow(
        [
            node(
                1,
                "LoraLoader",
                ["ink.safetensors", 1.0, 1.0],
                models=[{"name": "ink.safetensors", "hash": autov2(LORA), "hash_type": "AutoV2"}],
            )
        ]
    )
    root = tmp_path / "models"
    report = resolver_for(root, search=False).run(graph, download=True)
    (item,) = report.items
    assert item.status is Status.FAILED and sha256(LORA)[:12] in item.reason, item.to_dict()
    assert not (root / "loras" / "ink.safetensors").exists()
    assert not list(root.rglob("*.safetensors*"))  # no .part kept for bytes known to be wrong


# --- lockfile -----------------------------------------------------------------------------------------


def test_lockfile_from_a_civitai_resolved_workflow_round_trips(hub, tmp_path: Path):
    workflow = tmp_path / "wf.json"
    graph = ui_workflow(
        [
            node(
                1,
                "CheckpointLoaderSimple",
                ["juggernaut.safetensors"],
                models=[{"name": "juggernaut.safetensors", "hash": autov2(CHECKPOINT), "hash_type": "AutoV2"}],
            ),
            node(
                2,
                "LoraLoader",
                ["styles/ink.safetensors", 1.0, 1.0],
                models=[
                    {
                        "name": "styles/ink.safetensors",
                        "url": "urn:air:sdxl:lora:civitai:{}@{}".format(*hub.ids["lora"]),
                    }
                ],
            ),
        ]
    )
    workflow.write_text(json.dumps(graph), encoding="utf-8")
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    locked = lock(workflow, resolver=resolver_for(machine_a), download=True)
    path = locked.save(tmp_path / "wf.lock.json")
    by_kind = {m.kind: m for m in locked.models}
    assert set(by_kind) == {"checkpoints", "loras"}
    assert by_kind["checkpoints"].sha256 == sha256(CHECKPOINT) and by_kind["loras"].sha256 == sha256(LORA)
    assert by_kind["loras"].name == "styles/ink.safetensors"
    for model in locked.models:
        assert model.url.startswith("https://civitai.com/") or model.air.startswith("urn:air:"), model
        assert hub.civitai_url not in model.url  # public host, never the test server's

    # Locking again once the files are present (the workflow's AIR and hash, no fetch) pins the same sources.
    relocked = lock(workflow, resolver=resolver_for(machine_a))
    assert [(m.name, m.sha256, m.url) for m in relocked.models] == [(m.name, m.sha256, m.url) for m in locked.models]

    report = resolve_lockfile(path, standalone_folders(machine_b), resolver=resolver_for(machine_b))
    assert report.counts()["fetched"] == 2, report.to_dict()
    for model in locked.models:
        a, b = machine_a / model.kind / model.name, machine_b / model.kind / model.name
        assert sha256(b.read_bytes()) == sha256(a.read_bytes()) == model.sha256

    again = resolve_lockfile(path, standalone_folders(machine_b), resolver=resolver_for(machine_b))
    assert {i.status for i in again.items} == {Status.FOUND}


# --- CLI ----------------------------------------------------------------------------------------------


def test_cli_resolves_and_downloads_the_models_of_an_a1111_png(hub, tmp_path: Path):
    text = (
        "a cat in ink <lora:ink_style:0.7>\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 1024x1024, "
        f'Model hash: {autov2(CHECKPOINT)}, Model: juggernaut_xl, Lora hashes: "ink_style: {autov3(LORA)}"'
    )
    image = save_png(tmp_path / "00001-42.png", parameters=text)
    models = tmp_path / "models"
    env = {**os.environ, "HF_ENDPOINT": hub.hf_url, "CIVITAI_ENDPOINT": hub.civitai_url, "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hubloader", "resolve", str(image), "--download", "--models-dir", str(models)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (models / "checkpoints" / "juggernautXL_v9.safetensors").read_bytes() == CHECKPOINT
    assert (models / "loras" / "inkStyle_v10.safetensors").read_bytes() == LORA
    rows = {
        line.split()[2]: line.split()[0]
        for line in done.stdout.splitlines()
        if line.split()[1:2] in (["checkpoints"], ["loras"])
    }
    assert rows == {"juggernaut_xl": "fetched", "ink_style": "fetched"}, done.stdout
    assert civitai_calls(hub, "/api/v1/model-versions/by-hash", "POST") == []  # short hashes: asked one by one
