"""HuggingFaceHubService against the loopback fake Hub, with the real huggingface_hub client.

Run on the newest (.venv) and the oldest supported huggingface_hub (.venv-hf-oldest, 0.26.5).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from hubloader.core import errors
from hubloader.core.metadata import BaseModel, ModelFilter, ModelFormat, ModelType, Source
from hubloader.faces.advice import CLI, explain
from hubloader.sources.huggingface import HuggingFaceHubService, link_into
from tests.fakehub.modelfiles import kohya_lora, kohya_metadata, safetensors_bytes, sdxl_checkpoint

pytestmark = pytest.mark.hf

TINY_SDXL = "hf-internal-testing/tiny-stable-diffusion-xl-pipe"
TOKEN = "hf_TestTokenValue0123456789abcdef"  # looks real enough for redaction patterns to matter


def _st(seed: int, *shape: int) -> bytes:
    return safetensors_bytes({"weight": ("F16", shape or (8, 8))}, seed=seed)


def diffusers_files(with_pickles: bool = False) -> dict[str, bytes]:
    """A tiny SDXL pipeline in diffusers layout: model_index.json and a few small component weights."""
    files = {
        "model_index.json": json.dumps(
            {"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
        ).encode(),
        "README.md": b"# tiny sdxl\n",
        "unet/config.json": b'{"cross_attention_dim": 64}',
        "unet/diffusion_pytorch_model.safetensors": _st(1, 32, 32),
        "vae/config.json": b'{"latent_channels": 4}',
        "vae/diffusion_pytorch_model.safetensors": _st(2, 16, 16),
        "text_encoder/config.json": b'{"hidden_size": 32}',
        "text_encoder/model.safetensors": _st(3, 16, 32),
    }
    if with_pickles:
        files["unet/diffusion_pytorch_model.bin"] = b"\x80\x02pickle standing in for torch.save output" * 64
        files["text_encoder/pytorch_model.bin"] = b"\x80\x02another pickle" * 64
    return files


def add_tiny_sdxl(hub, repo_id: str = TINY_SDXL, **kwargs) -> str:
    kwargs.setdefault("tags", ["diffusers", "diffusers:StableDiffusionXLPipeline", "text-to-image", "sdxl"])
    kwargs.setdefault("pipeline_tag", "text-to-image")
    kwargs.setdefault("library_name", "diffusers")
    return hub.add_hf_repo(repo_id, files=diffusers_files(kwargs.pop("with_pickles", False)), **kwargs)


def add_lora(hub, repo_id: str = "someone/sdxl-pixel-lora", **kwargs) -> tuple[str, bytes]:
    data = safetensors_bytes(kohya_lora("sdxl"), kohya_metadata("pixel", "sdxl"), seed=7)
    kwargs.setdefault("tags", ["lora", "diffusers", "text-to-image", "template:sd-lora"])
    kwargs.setdefault("card_data", {"base_model": "stabilityai/stable-diffusion-xl-base-1.0"})
    kwargs.setdefault("library_name", "diffusers")
    commit = hub.add_hf_repo(repo_id, files={"pytorch_lora_weights.safetensors": data, "README.md": b"x"}, **kwargs)
    return commit, data


def repo_folder(repo_id: str) -> Path:
    return Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))


# --- the seed's acceptance snippets (SEED.md AC 1, Task 14.1.1) ----------------------------------


def test_hf_client_initialization():
    service = HuggingFaceHubService(token="hf_test")
    assert service.client is not None


def test_search_models(hub_env):
    for i in range(7):
        add_tiny_sdxl(hub_env, f"org{i}/sdxl-model-{i}", downloads=100 - i)
    service = HuggingFaceHubService()
    results = service.search_models("sdxl", limit=5)
    assert len(results) <= 5
    assert all(r.source == Source.HUGGINGFACE for r in results)
    assert len(results) == 5  # there were 7 matches: the limit, not the catalog, stopped us


def test_download_and_cache(hub_env):
    add_tiny_sdxl(hub_env)
    service = HuggingFaceHubService()
    path = service.download_model("hf-internal-testing/tiny-stable-diffusion-xl-pipe")
    assert path.exists()

    # Verificar que segunda descarga usa cache
    import time

    start = time.time()
    path2 = service.download_model("hf-internal-testing/tiny-stable-diffusion-xl-pipe")
    assert time.time() - start < 1.0  # Debe ser instantáneo
    assert path2 == path


def test_cache_management():
    service = HuggingFaceHubService()
    cached = service.list_cached_models()
    assert isinstance(cached, list)


def test_ac1_huggingface_hub_integration(hub_env, tmp_path, monkeypatch):
    hub_env.valid_hf_tokens.add(TOKEN)
    add_tiny_sdxl(hub_env, "stabilityai/stable-diffusion-xl-base-1.0")
    add_lora(hub_env)
    models_dir = tmp_path / "models"

    hub_service = HuggingFaceHubService(token=TOKEN)

    # Buscar modelos
    models = hub_service.search_models(
        query="stable-diffusion-xl", filter=ModelFilter(task="text-to-image", library="diffusers")
    )

    # Descargar modelo
    model_path = hub_service.download_model(
        model_id="stabilityai/stable-diffusion-xl-base-1.0", revision="main", cache_dir=str(models_dir)
    )

    # Listar modelos cacheados
    cached = hub_service.list_cached_models()
    assert len(cached) > 0

    assert [m.model_id for m in models] == ["stabilityai/stable-diffusion-xl-base-1.0"]
    assert model_path.is_relative_to(models_dir) and (model_path / "model_index.json").is_file()
    assert [m.model_id for m in cached] == ["stabilityai/stable-diffusion-xl-base-1.0"]


# --- search: mapping Hub results to ModelMetadata ------------------------------------------------


def test_search_maps_type_base_format_stats_and_url(hub_env):
    add_tiny_sdxl(hub_env, "acme/sdxl-pipe", downloads=42, likes=7)
    add_lora(hub_env, "acme/sdxl-pixel-lora", downloads=5)
    hub_env.add_hf_repo(
        "acme/sdxl-single-file",
        files={"sdxl_single.safetensors": safetensors_bytes(sdxl_checkpoint()), "README.md": b"x"},
        tags=["text-to-image", "stable-diffusion-xl"],
        pipeline_tag="text-to-image",
    )
    by_id = {m.model_id: m for m in HuggingFaceHubService().search_models("acme/", limit=20)}

    pipe, lora, single = by_id["acme/sdxl-pipe"], by_id["acme/sdxl-pixel-lora"], by_id["acme/sdxl-single-file"]
    assert (pipe.type, pipe.format, pipe.base_model) == (ModelType.BASE_MODEL, ModelFormat.DIFFUSERS, BaseModel.SDXL)
    assert (pipe.download_count, pipe.like_count) == (42, 7)
    assert pipe.remote_url == f"{hub_env.hf_url}/acme/sdxl-pipe"
    assert pipe.author == "acme" and pipe.version and pipe.updated_at >= pipe.created_at
    assert (lora.type, lora.format, lora.base_model) == (ModelType.LORA, ModelFormat.SAFETENSORS, BaseModel.SDXL)
    assert (single.type, single.format) == (ModelType.BASE_MODEL, ModelFormat.SAFETENSORS)
    assert single.base_model is BaseModel.SDXL


def test_search_filters_by_task_library_type_and_base(hub_env):
    add_tiny_sdxl(hub_env, "acme/sdxl-pipe")
    add_lora(hub_env, "acme/sdxl-lora")
    add_lora(hub_env, "acme/sd15-lora", card_data={"base_model": "runwayml/stable-diffusion-v1-5"})
    hub_env.add_hf_repo("acme/bert-thing", files={"model.safetensors": _st(9)}, library_name="transformers")
    service = HuggingFaceHubService()

    diffusers = service.search_models("acme", filter=ModelFilter(task="text-to-image", library="diffusers"))
    assert {m.model_id for m in diffusers} >= {"acme/sdxl-pipe"}
    assert "acme/bert-thing" not in {m.model_id for m in diffusers}

    loras = service.search_models("acme", filter=ModelFilter(model_type=ModelType.LORA, base_model=BaseModel.SDXL))
    assert [m.model_id for m in loras] == ["acme/sdxl-lora"]


# --- downloads and the shared HF cache -----------------------------------------------------------


def test_repo_download_uses_the_hf_cache_layout_and_prefers_safetensors(hub_env):
    commit = add_tiny_sdxl(hub_env, with_pickles=True)
    path = HuggingFaceHubService().download_model(TINY_SDXL)

    assert path == repo_folder(TINY_SDXL) / "snapshots" / commit
    assert (repo_folder(TINY_SDXL) / "refs" / "main").read_text() == commit
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == diffusers_files()[
        "unet/diffusion_pytorch_model.safetensors"
    ]
    assert not list(path.rglob("*.bin"))  # the pickles next to safetensors were skipped

    from huggingface_hub import try_to_load_from_cache  # diffusers' own lookup finds our files

    found = try_to_load_from_cache(TINY_SDXL, "vae/config.json", cache_dir=os.environ["HF_HUB_CACHE"])
    assert found is not None and Path(found) == path / "vae" / "config.json"


def test_pickles_are_fetched_when_asked(hub_env):
    add_tiny_sdxl(hub_env, with_pickles=True)
    service = HuggingFaceHubService()

    asked = service.download_model(TINY_SDXL, allow_patterns=["unet/*.bin"])
    assert [p.name for p in asked.rglob("*") if p.is_file()] == ["diffusion_pytorch_model.bin"]

    everything = service.download_model(TINY_SDXL, prefer_safetensors=False)
    assert (everything / "text_encoder" / "pytorch_model.bin").is_file()


def test_pinned_cached_repo_download_makes_no_request(hub_env):
    commit = add_tiny_sdxl(hub_env)
    service = HuggingFaceHubService()
    first = service.download_model(TINY_SDXL, revision=commit)
    hub_env.requests.clear()

    again = HuggingFaceHubService().download_model(TINY_SDXL, revision=commit)
    also = HuggingFaceHubService().download_model(f"{TINY_SDXL}@{commit}/unet/diffusion_pytorch_model.safetensors")

    assert again == first and also == first / "unet" / "diffusion_pytorch_model.safetensors"
    assert hub_env.requests == []


def test_branch_second_download_transfers_no_bytes(hub_env):
    add_tiny_sdxl(hub_env)
    service = HuggingFaceHubService()
    service.download_model(TINY_SDXL)
    service.download_model(f"{TINY_SDXL}/unet/diffusion_pytorch_model.safetensors")
    hub_env.bytes_sent.clear()

    hub_env.requests.clear()
    service.download_model(TINY_SDXL)
    service.download_model(f"{TINY_SDXL}/unet/diffusion_pytorch_model.safetensors")
    assert sum(hub_env.bytes_sent.values()) == 0
    # One question each: which commit is main now (repo info; HEAD for the file)?
    assert [r.method for r in hub_env.requests] == ["GET", "HEAD"]


def test_single_file_lands_in_hf_cache_and_is_verified(hub_env):
    commit, data = add_lora(hub_env, "acme/pixel-lora")
    path = HuggingFaceHubService().download_model("acme/pixel-lora/pytorch_lora_weights.safetensors")

    sha = hashlib.sha256(data).hexdigest()
    assert path == repo_folder("acme/pixel-lora") / "snapshots" / commit / "pytorch_lora_weights.safetensors"
    assert path.is_symlink() and path.resolve() == repo_folder("acme/pixel-lora") / "blobs" / sha
    assert path.read_bytes() == data
    assert (repo_folder("acme/pixel-lora") / "refs" / "main").read_text() == commit
    assert not list((repo_folder("acme/pixel-lora") / "blobs").glob("*.part"))


@pytest.mark.parametrize("kind", ["blob", "resolve"])
def test_single_file_from_a_hub_url(hub_env, kind):
    commit, data = add_lora(hub_env, "acme/pixel-lora")
    url = f"{hub_env.hf_url}/acme/pixel-lora/{kind}/main/pytorch_lora_weights.safetensors"
    path = HuggingFaceHubService().download_model(url)
    assert path.read_bytes() == data and commit in path.parts


def test_large_single_file_resumes_after_an_interrupted_run(hub_env):
    data = safetensors_bytes({"w": ("F32", (512, 1024))}, seed=11)  # 2 MiB
    commit = hub_env.add_hf_repo("acme/big", files={"big.safetensors": data})
    sha = hashlib.sha256(data).hexdigest()
    # An earlier process died after the first MiB: its partial blob is still in the cache.
    part = repo_folder("acme/big") / "blobs" / f"{sha}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: 1024 * 1024])

    path = HuggingFaceHubService().download_model("acme/big/big.safetensors")

    assert path.read_bytes() == data and commit in path.parts
    assert sum(hub_env.bytes_sent.values()) == len(data) - 1024 * 1024


def test_cancel_stops_a_large_file_keeps_its_part_and_the_next_run_resumes(hub_env):
    data = safetensors_bytes({"w": ("F32", (2048, 1024))}, seed=13)  # 8 MiB through the download engine
    hub_env.add_hf_repo("acme/big", files={"big.safetensors": data})
    hub_env.faults.update(bandwidth_per_connection=4 * 1024 * 1024)
    cancel = threading.Event()

    def stop_once_bytes_arrive(event) -> None:
        if event.bytes_done:
            cancel.set()

    service = HuggingFaceHubService()
    with pytest.raises(errors.Cancelled):
        service.download_model("acme/big/big.safetensors", progress=stop_once_bytes_arrive, cancel=cancel)
    assert (repo_folder("acme/big") / "blobs" / f"{hashlib.sha256(data).hexdigest()}.part").is_file()
    assert not (repo_folder("acme/big") / "snapshots").exists()

    hub_env.faults.update(bandwidth_per_connection=None)
    hub_env.bytes_sent.clear()
    path = HuggingFaceHubService().download_model("acme/big/big.safetensors")
    assert path.read_bytes() == data
    assert sum(hub_env.bytes_sent.values()) < len(data)  # resumed from the kept part, not restarted


def test_cancel_is_honoured_between_the_small_files_of_a_repo(hub_env):
    add_tiny_sdxl(hub_env)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(errors.Cancelled):
        HuggingFaceHubService().download_model(TINY_SDXL, cancel=cancel)
    assert not [r for r in hub_env.requests if "/resolve/" in r.path]  # no file was asked for
    assert not (repo_folder(TINY_SDXL) / "snapshots").exists()


def test_large_single_file_survives_a_dropped_connection(hub_env):
    data = safetensors_bytes({"w": ("F32", (512, 1024))}, seed=12)
    hub_env.add_hf_repo("acme/big", files={"big.safetensors": data})
    hub_env.faults.update(drop_after_bytes=700_000, drop_count=1)

    path = HuggingFaceHubService().download_model("acme/big/big.safetensors")

    assert path.read_bytes() == data
    assert len(data) <= sum(hub_env.bytes_sent.values()) < len(data) + 700_000  # resumed, not restarted


def test_large_repo_files_go_through_the_resumable_engine(hub_env, monkeypatch):
    import hubloader.sources.huggingface as hf_module

    monkeypatch.setattr(hf_module, "RESUMABLE_MIN_BYTES", 2048)
    files = diffusers_files()
    unet = files["unet/diffusion_pytorch_model.safetensors"]
    add_tiny_sdxl(hub_env)
    sha = hashlib.sha256(unet).hexdigest()
    part = repo_folder(TINY_SDXL) / "blobs" / f"{sha}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(unet[:1000])

    path = HuggingFaceHubService().download_model(TINY_SDXL)

    assert (path / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == unet
    assert sum(hub_env.bytes_sent.values()) == sum(len(body) for body in files.values()) - 1000


def test_link_into_places_a_cached_file_without_copying(hub_env, tmp_path):
    _, data = add_lora(hub_env, "acme/pixel-lora")
    cached = HuggingFaceHubService().download_model("acme/pixel-lora/pytorch_lora_weights.safetensors")
    dest = tmp_path / "ComfyUI" / "models" / "loras" / "pixel.safetensors"

    assert link_into(cached, dest) == dest
    assert dest.read_bytes() == data and os.path.samefile(dest, cached)
    assert link_into(cached, dest) == dest  # idempotent

    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not the same")
    with pytest.raises(errors.HubloaderError, match="already exists"):
        link_into(cached, other)
    assert other.read_bytes() == b"not the same"


def test_peek_safetensors_reads_only_the_header(hub_env):
    data = safetensors_bytes(kohya_lora("sdxl"), kohya_metadata("pixel", "sdxl"), seed=7)
    data += b"\0" * (2 * 1024 * 1024)  # tensor bytes nobody should fetch
    hub_env.add_hf_repo("acme/peek", files={"lora.safetensors": data})

    header = HuggingFaceHubService().peek_safetensors("acme/peek/lora.safetensors")

    assert header["__metadata__"]["ss_base_model_version"] == "sdxl_base_v1-0"
    assert header["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"]["shape"] == [8, 1280]
    assert sum(hub_env.bytes_sent.values()) < 1024 * 1024


# --- the local cache ------------------------------------------------------------------------------


def test_list_and_delete_cached_models(hub_env):
    add_tiny_sdxl(hub_env)
    _, data = add_lora(hub_env, "acme/pixel-lora")
    service = HuggingFaceHubService()
    pipe_path = service.download_model(TINY_SDXL)
    lora_path = service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors")

    cached = {m.model_id: m for m in service.list_cached_models()}
    assert set(cached) == {TINY_SDXL, "acme/pixel-lora/pytorch_lora_weights.safetensors"}
    pipe, lora = cached[TINY_SDXL], cached["acme/pixel-lora/pytorch_lora_weights.safetensors"]
    assert (pipe.format, pipe.type, pipe.local_path) == (ModelFormat.DIFFUSERS, ModelType.BASE_MODEL, pipe_path)
    assert pipe.source is Source.HUGGINGFACE and pipe.size_bytes > 0 and pipe.base_model is BaseModel.SDXL
    assert lora.local_path == lora_path and lora.size_bytes == len(data)
    assert lora.sha256 == hashlib.sha256(data).hexdigest()

    assert service.delete_cached_model("acme/pixel-lora/pytorch_lora_weights.safetensors") is True
    assert not lora_path.exists() and not (repo_folder("acme/pixel-lora") / "blobs" / lora.sha256).exists()
    assert service.delete_cached_model(TINY_SDXL) is True
    assert not repo_folder(TINY_SDXL).exists()
    assert service.list_cached_models() == []
    assert service.delete_cached_model(TINY_SDXL) is False


def test_deleting_one_file_keeps_the_rest_of_the_repo(hub_env):
    add_tiny_sdxl(hub_env)
    service = HuggingFaceHubService()
    path = service.download_model(TINY_SDXL)

    assert service.delete_cached_model(f"{TINY_SDXL}/vae/diffusion_pytorch_model.safetensors") is True
    assert not (path / "vae" / "diffusion_pytorch_model.safetensors").exists()
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").is_file()


# --- errors ---------------------------------------------------------------------------------------


def _assert_no_token(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    assert TOKEN not in str(exc) and TOKEN not in repr(exc)
    assert TOKEN not in caplog.text


def test_gated_repo_names_repo_and_says_what_to_do(hub_env, caplog):
    caplog.set_level(logging.DEBUG)
    add_lora(hub_env, "acme/gated-lora", gated=True)
    hub_env.valid_hf_tokens.add(TOKEN)  # a valid token, but its owner has not accepted the terms
    service = HuggingFaceHubService(token=TOKEN)

    with pytest.raises(errors.GatedModel) as info:
        service.download_model("acme/gated-lora/pytorch_lora_weights.safetensors")
    assert "acme/gated-lora" in str(info.value) and "accept" in str(info.value)
    assert "HF_TOKEN" in explain(info.value, CLI)  # the command line says what to do
    with pytest.raises(errors.GatedModel):
        service.download_model("acme/gated-lora")
    _assert_no_token(info.value, caplog)

    hub_env.grant("acme/gated-lora", TOKEN)
    assert service.download_model("acme/gated-lora/pytorch_lora_weights.safetensors").is_file()


def test_missing_or_private_repo(hub_env, caplog):
    caplog.set_level(logging.DEBUG)
    add_lora(hub_env, "acme/secret-lora", private=True)

    with pytest.raises(errors.NotFound) as anonymous:
        HuggingFaceHubService().download_model("acme/secret-lora")
    assert isinstance(anonymous.value, errors.AuthRequired)  # a token might help: say so
    assert anonymous.value.service == "huggingface" and "HF_TOKEN" in explain(anonymous.value, CLI)

    hub_env.valid_hf_tokens.add(TOKEN)
    with pytest.raises(errors.NotFound) as with_token:
        HuggingFaceHubService(token=TOKEN).download_model("acme/no-such-repo")
    assert not isinstance(with_token.value, errors.AuthRequired)
    assert "acme/no-such-repo" in str(with_token.value)
    _assert_no_token(with_token.value, caplog)

    hub_env.grant("acme/secret-lora", TOKEN)
    assert HuggingFaceHubService(token=TOKEN).download_model("acme/secret-lora").is_dir()


def test_missing_file_and_bad_revision_are_distinct(hub_env):
    add_lora(hub_env, "acme/pixel-lora")
    service = HuggingFaceHubService()

    with pytest.raises(errors.FileNotFoundOnHub, match="nope.safetensors"):
        service.download_model("acme/pixel-lora/nope.safetensors")
    with pytest.raises(errors.RevisionNotFound, match="no-such-branch"):
        service.download_model("acme/pixel-lora", revision="no-such-branch")
    with pytest.raises(errors.RevisionNotFound):
        service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors", revision="no-such-branch")
    with pytest.raises(errors.FileNotFoundOnHub):
        service.download_model("acme/pixel-lora", allow_patterns=["*.gguf"])


def test_bad_token_is_auth_required_and_never_printed(hub_env, caplog):
    caplog.set_level(logging.DEBUG)
    add_lora(hub_env, "acme/pixel-lora")
    service = HuggingFaceHubService(token=TOKEN)  # not in hub.valid_hf_tokens: refused

    with pytest.raises(errors.AuthRequired) as info:
        service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors")
    assert not isinstance(info.value, errors.NotFound)
    _assert_no_token(info.value, caplog)
    assert TOKEN not in repr(service)


def test_offline_serves_the_cache_and_refuses_the_rest(hub_env, monkeypatch):
    add_tiny_sdxl(hub_env)
    add_lora(hub_env, "acme/pixel-lora")
    service = HuggingFaceHubService()
    repo_path = service.download_model(TINY_SDXL)
    file_path = service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_env.requests.clear()

    assert service.download_model(TINY_SDXL) == repo_path
    assert service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors") == file_path
    with pytest.raises(errors.OfflineError):
        service.download_model("acme/pixel-lora/other.safetensors")
    with pytest.raises(errors.OfflineError):
        service.download_model("acme/never-downloaded")
    with pytest.raises(errors.OfflineError):
        service.search_models("sdxl")
    assert hub_env.requests == []


def test_unreachable_endpoint_is_a_network_error(monkeypatch):
    # (search is left out: huggingface_hub 2.x retries list_models with backoff for ~25 s first)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    service = HuggingFaceHubService()
    with pytest.raises(errors.NetworkError) as caught:
        service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors")
    message = str(caught.value)
    assert "(connection refused)" in message and "HF_ENDPOINT" in message and len(message) < 240
    assert caught.value.__cause__ is not None  # the client's own exception, for --verbose tracebacks
    with pytest.raises(errors.NetworkError, match="connection refused"):
        service.download_model("acme/pixel-lora")


def test_model_info_for_a_repo_and_for_one_file(hub_env):
    commit, data = add_lora(hub_env, "acme/pixel-lora", downloads=3)
    service = HuggingFaceHubService()

    repo = service.model_info("acme/pixel-lora")
    assert (repo.type, repo.base_model, repo.version, repo.download_count) == (
        ModelType.LORA,
        BaseModel.SDXL,
        commit,
        3,
    )
    assert {f.name for f in repo.files} == {"pytorch_lora_weights.safetensors", "README.md"}

    one = service.model_info("acme/pixel-lora/pytorch_lora_weights.safetensors")
    assert one.model_id == "acme/pixel-lora/pytorch_lora_weights.safetensors"
    assert (one.sha256, one.size_bytes, one.type) == (hashlib.sha256(data).hexdigest(), len(data), ModelType.LORA)
    assert one.remote_url.endswith(f"/acme/pixel-lora/resolve/{commit}/pytorch_lora_weights.safetensors")
    with pytest.raises(errors.FileNotFoundOnHub):
        service.model_info("acme/pixel-lora/missing.safetensors")


def test_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    service = HuggingFaceHubService()
    assert service.client.token == TOKEN
    assert TOKEN not in repr(service)


_UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens


def test_pinned_present_file_needs_no_hub_in_the_api_and_the_cli(hub_env, tmp_path, monkeypatch):
    from tests.test_cli import hubloader

    commit, data = add_lora(hub_env, "acme/pinned-lora")
    name = "acme/pinned-lora/pytorch_lora_weights.safetensors"
    target = ["--to", str(tmp_path / "models")]
    cached = HuggingFaceHubService().download_model(name, revision=commit)
    assert hubloader("get", name, "--revision", commit, *target).returncode == 0
    hub_env.requests.clear()

    for env in (
        {"HF_HUB_OFFLINE": "1"},
        {"HF_ENDPOINT": _UNREACHABLE},
        {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": _UNREACHABLE},
    ):
        with monkeypatch.context() as patched:
            for key, value in env.items():
                patched.setenv(key, value)
            assert HuggingFaceHubService().download_model(name, revision=commit) == cached
            again = hubloader("get", name, "--revision", commit, *target)
        assert again.returncode == 0, (env, again.stderr)
        assert "Already present" in again.stdout
    assert (tmp_path / "models" / "pytorch_lora_weights.safetensors").read_bytes() == data
    assert hub_env.requests == []


def test_small_git_files_pass_the_same_gate_as_lfs_files(hub_env):
    # A small git-stored file (no LFS, no SHA256 published) holding pickle bytes under a name that promises
    # none: the gate's check on the actual bytes refuses it, in a one-file get and inside a repository.
    pickled = b"\x80\x04\x95" + b"pickle bytes posing as a config " * 4
    commit = hub_env.add_hf_repo("acme/sneaky", {"README.md": b"# sneaky\n", "config.json": pickled})
    service = HuggingFaceHubService()
    with pytest.raises(errors.UnsafeFile, match="config.json"):
        service.download_model("acme/sneaky/config.json")
    with pytest.raises(errors.UnsafeFile, match="config.json"):
        service.download_model("acme/sneaky")
    blobs = Path(os.environ["HF_HUB_CACHE"]) / "models--acme--sneaky" / "blobs"
    assert not [p for p in blobs.iterdir() if p.read_bytes() == pickled]

    # The small files that pass land as huggingface_hub lays them out: blobs named by their git blob id.
    readme = service.download_model(f"acme/sneaky@{commit}/README.md")
    blob = Path(os.path.realpath(readme))
    assert readme.read_bytes() == b"# sneaky\n"
    assert blob.name == hashlib.sha1(b"blob 9\0# sneaky\n").hexdigest() and blob.parent == blobs


def test_a_small_file_that_is_not_its_git_blob_id_is_refused_and_removed(hub_env):
    hub_env.add_hf_repo("acme/flipped", {"config.json": b'{"hidden_size": 32, "layers": 4}'})
    hub_env.faults.wrong_bytes = 0  # the Hub's bytes differ from the git blob id it published
    with pytest.raises(errors.UnsafeFile, match="git blob id"):
        HuggingFaceHubService().download_model("acme/flipped/config.json")
    folder = Path(os.environ["HF_HUB_CACHE"]) / "models--acme--flipped"
    assert not list(folder.glob("blobs/*")) and not list(folder.glob("snapshots/*/config.json"))

    hub_env.faults.wrong_bytes = None
    assert HuggingFaceHubService().download_model("acme/flipped/config.json").read_bytes().startswith(b'{"hidden')


def test_an_unreachable_hub_serves_what_the_cache_last_saw_of_a_branch(hub_env, monkeypatch):
    add_tiny_sdxl(hub_env)
    add_lora(hub_env, "acme/pixel-lora")
    service = HuggingFaceHubService()
    repo_path = service.download_model(TINY_SDXL)
    file_path = service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors")

    monkeypatch.setenv("HF_ENDPOINT", _UNREACHABLE)
    assert service.download_model(TINY_SDXL) == repo_path
    assert service.download_model("acme/pixel-lora/pytorch_lora_weights.safetensors") == file_path
    with pytest.raises(errors.NetworkError, match="connection refused"):
        service.download_model("acme/pixel-lora/other.safetensors")  # never cached: nothing to serve
    with pytest.raises(errors.NetworkError, match="connection refused"):
        service.download_model(TINY_SDXL, allow_patterns=["*.bin"], prefer_safetensors=False)
