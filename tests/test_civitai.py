"""CivitAIService against the loopback CivitAI server (tests/fakehub): the seed's AC 2 and Task 14.1.2
snippets, search filtering, lookups, downloads, every error route, and the API key's hygiene."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import pytest
import requests

from hubloader import BaseModel, CivitAIService, ModelType, SortBy, Source
from hubloader.core.errors import (
    AuthRequired,
    DownloadsDisabled,
    EarlyAccess,
    InvalidReference,
    NetworkError,
    NotFound,
    PickleNotAllowed,
    RateLimited,
)
from hubloader.core.folders import models_root
from hubloader.faces.advice import CLI, explain
from hubloader.sources.references import parse_reference

TOKEN = "civitai-test-key-0123456789abcdef"


@pytest.fixture
def service(hub_env) -> CivitAIService:
    """A client with its own fast limiter (the seed's default pace is tested separately)."""
    client = CivitAIService(rate_limit=200)
    client.retry_backoff = 0.01
    return client


def api_requests(hub, path_part: str = "", method: str | None = None) -> list:
    return [
        r
        for r in hub.requests
        if r.host == "civitai" and path_part in r.path and (method is None or r.method == method)
    ]


def query_of(request) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(request.query)


@pytest.fixture
def anime_catalog(hub_env) -> dict[str, tuple[int, int]]:
    """LoRAs for several bases, plus look-alikes the SDXL LoRA search must not return."""
    hub = hub_env
    ids = {
        "xl": hub.add_civitai_model(
            "Anime Style XL",
            type="LORA",
            base_model="SDXL 1.0",
            trained_words=["anime style", "cel shading"],
            description="<p>An anime LoRA.</p><p>Recommended weight: 0.7</p>",
            tags=["anime", "style"],
            stats={"downloadCount": 5000, "thumbsUpCount": 90, "thumbsDownCount": 10},
        ),
        "lightning": hub.add_civitai_model("Anime Style Lightning", type="LORA", base_model="SDXL Lightning"),
        "pony": hub.add_civitai_model("Anime Style Pony", type="LORA", base_model="Pony"),
        "sd15": hub.add_civitai_model("Anime Style 1.5", type="LORA", base_model="SD 1.5"),
        "locon": hub.add_civitai_model("Anime Style LoCon", type="LoCon", base_model="SDXL 1.0"),
        "ckpt": hub.add_civitai_model("Anime Style Checkpoint", type="Checkpoint", base_model="SDXL 1.0"),
    }
    # A model whose newest version is SD 1.5 and an older one SDXL: the SDXL version must be the one described.
    mixed_id, old_version = hub.add_civitai_model("Anime Style Mixed", type="LORA", base_model="SDXL 1.0")
    new_version = hub.add_civitai_version(mixed_id, "v2-sd15", base_model="SD 1.5")
    ids["mixed"] = (mixed_id, old_version)
    ids["mixed_new"] = (mixed_id, new_version)
    return ids


# --- the seed's acceptance criteria and subtasks --------------------------------------------------


def test_ac2_civitai_integration(hub_env, anime_catalog, tmp_path):
    """AC 2 as written (the ids are the fake's, the folder a temporary one)."""
    hub_env.civitai_tokens.add(TOKEN)
    model_id, version_id = anime_catalog["xl"]

    civitai_service = CivitAIService(api_key=TOKEN)

    loras = civitai_service.search_models(
        query="anime style", type=ModelType.LORA, base_model=BaseModel.SDXL, sort=SortBy.POPULARITY
    )
    assert loras and all(r.type == ModelType.LORA and r.base_model == BaseModel.SDXL for r in loras)

    lora_info = civitai_service.download_model(
        model_id=model_id, version_id=version_id, download_dir=tmp_path / "loras"
    )

    assert civitai_service.verify_checksum(lora_info.path, lora_info.sha256)
    assert lora_info.path.parent == tmp_path / "loras"
    assert lora_info.path.name == "Anime_Style_XL.safetensors"
    assert lora_info.sha256 == hashlib.sha256(lora_info.path.read_bytes()).hexdigest()
    assert lora_info.metadata.model_id == f"civitai:{model_id}@{version_id}"
    assert lora_info.metadata.local_path == lora_info.path
    assert lora_info.metadata.trigger_words == ["anime style", "cel shading"]
    assert lora_info.metadata.recommended_weight == 0.7


def test_civitai_api_client(hub_env):
    """14.1.2.1"""
    service = CivitAIService()
    assert service.BASE_URL == "https://civitai.com/api/v1"
    assert service.api_url == f"{hub_env.civitai_url}/api/v1"  # the endpoint is read at call time


def test_default_endpoint_is_civitai(monkeypatch):
    monkeypatch.delenv("CIVITAI_ENDPOINT", raising=False)
    assert CivitAIService().api_url == CivitAIService.BASE_URL


def test_search_loras(hub_env, anime_catalog):
    """14.1.2.2 as written."""
    service = CivitAIService()
    results = service.search_models(query="anime", type=ModelType.LORA, base_model=BaseModel.SDXL)
    assert all(r.type == ModelType.LORA for r in results)
    assert all(r.base_model == BaseModel.SDXL for r in results)
    names = {r.name for r in results}
    assert names == {"Anime Style XL", "Anime Style Lightning", "Anime Style Mixed"}


@pytest.mark.slow
def test_download_with_rate_limit(hub_env, tmp_path):
    """14.1.2.3 as written: 3 downloads at 0.5 request/s take at least 4 s (an explicit seed contract)."""
    test_id, test_ver = hub_env.add_civitai_model("Rate Limited LoRA", type="LORA", base_model="SDXL 1.0")
    service = CivitAIService(rate_limit=0.5)  # 0.5 req/s

    start = time.time()
    for _ in range(3):
        service.download_model(model_id=test_id, version_id=test_ver)
    elapsed = time.time() - start

    assert elapsed >= 4.0  # 3 requests at 0.5 req/s = 2 intervals of 2 s at least


def test_checksum_verification(tmp_path):
    """14.1.2.4: a real file, its known SHA256, a wrong hash; AutoV2 and any case accepted."""
    service = CivitAIService()
    test_file = tmp_path / "model.safetensors"
    test_file.write_bytes(b"hubloader" * 100_000)
    known_sha256 = hashlib.sha256(test_file.read_bytes()).hexdigest()
    assert service.verify_checksum(test_file, known_sha256)
    assert service.verify_checksum(test_file, known_sha256.upper())
    assert service.verify_checksum(test_file, known_sha256[:10])  # AutoV2
    assert not service.verify_checksum(test_file, "wrong_hash")
    assert not service.verify_checksum(test_file, "0" * 64)
    assert not service.verify_checksum(test_file, known_sha256[:12])  # not a SHA256 prefix we accept
    with pytest.raises(FileNotFoundError):
        service.verify_checksum(tmp_path / "missing.safetensors", known_sha256)


# --- search ----------------------------------------------------------------------------------------


def test_search_sends_civitai_filter_strings(service, hub_env, anime_catalog):
    service.search_models(query="anime", type=ModelType.LORA, base_model=BaseModel.SDXL, period="week", nsfw=True)
    [request] = api_requests(hub_env, "/api/v1/models")
    query = query_of(request)
    assert "types=LORA" in query and "types=DoRA" in query and "types=LoCon" not in query
    assert "baseModels=SDXL 1.0" in query and "baseModels=SDXL Lightning" in query and "Pony" not in query
    assert "sort=Most Downloaded" in query and "period=Week" in query and "nsfw=true" in query


def test_search_describes_the_version_that_matches_the_base(service, anime_catalog):
    mixed_id, sdxl_version = anime_catalog["mixed"]
    [hit] = [r for r in service.search_models(query="mixed", type="lora", base_model="sdxl")]
    assert hit.version_id == str(sdxl_version)
    assert hit.model_id == f"civitai:{mixed_id}@{sdxl_version}"
    [newest] = service.search_models(query="mixed", type=ModelType.LORA, base_model=BaseModel.SD15)
    assert newest.version_id == str(anime_catalog["mixed_new"][1])


def test_search_other_kinds_and_bases(service, anime_catalog):
    assert [r.name for r in service.search_models("anime", type=ModelType.LYCORIS)] == ["Anime Style LoCon"]
    assert [r.name for r in service.search_models("anime", base_model=BaseModel.PONY)] == ["Anime Style Pony"]
    checkpoints = service.search_models("anime style", type=ModelType.CHECKPOINT)
    assert [(r.name, r.type) for r in checkpoints] == [("Anime Style Checkpoint", ModelType.BASE_MODEL)]


def test_search_follows_cursors_until_the_limit(service, hub_env):
    for i in range(105):
        hub_env.add_civitai_model(f"Paged LoRA {i:03d}", type="LORA", base_model="SD 1.5")
    results = service.search_models("paged", type=ModelType.LORA, limit=103)
    assert len(results) == 103
    assert len({r.model_id for r in results}) == 103
    pages = api_requests(hub_env, "/api/v1/models")
    assert len(pages) == 2 and "cursor=" in pages[1].query and "cursor=" not in pages[0].query


def test_search_stops_on_the_last_page(service, anime_catalog, hub_env):
    results = service.search_models("anime style", limit=50)
    assert len(results) == 7  # every model (the mixed one, with two versions, counts once)
    assert len(api_requests(hub_env, "/api/v1/models")) == 1


def test_search_rejects_an_unknown_period(service):
    with pytest.raises(ValueError, match="Week"):
        service.search_models("x", period="fortnight")


def test_recorded_list_is_searchable(service):
    results = service.search_models(type=ModelType.CHECKPOINT, base_model=BaseModel.SD15, sort=SortBy.RATING)
    assert len(results) == 10
    dreamshaper = next(r for r in results if r.name == "DreamShaper")
    assert dreamshaper.model_id == "civitai:4384@128713"
    assert dreamshaper.rating == 4.96 and dreamshaper.author == "Lykon"


# --- lookups ---------------------------------------------------------------------------------------


def test_get_model_details_is_complete(service, hub_env):
    model_id, version_id = hub_env.add_civitai_model(
        "Storybook",
        type="LORA",
        base_model="Flux.1 D",
        trained_words=["ppstorybook"],
        description="<p>Strength: 0.8, experiment as you like</p>",
        tags=["style"],
        creator="artist",
        stats={"downloadCount": 1436, "thumbsUpCount": 316, "thumbsDownCount": 4},
    )
    meta = service.get_model_details(model_id)
    assert meta.model_id == f"civitai:{model_id}@{version_id}"
    assert meta.source is Source.CIVITAI
    assert (meta.type, meta.base_model, meta.version) == (ModelType.LORA, BaseModel.FLUX1, "v1.0")
    assert meta.trigger_words == ["ppstorybook"] and meta.trigger_words_source == "civitai"
    assert (meta.recommended_weight, meta.recommended_weight_source) == (0.8, "civitai.description")
    assert meta.description == "Strength: 0.8, experiment as you like"
    assert meta.tags == ["style"] and meta.author == "artist"
    assert (meta.download_count, meta.like_count) == (1436, 316)
    assert meta.rating == 5.0  # the version's own thumbs: 316 up, 0 down
    assert meta.air == f"urn:air:flux1:lora:civitai:{model_id}@{version_id}"
    assert meta.preview_urls and meta.preview_urls[0].startswith(hub_env.cdn_url)
    [file] = meta.files
    assert file.sha256 == meta.sha256 and len(meta.sha256) == 64
    assert set(file.hashes) >= {"SHA256", "AutoV2", "AutoV3", "BLAKE3", "CRC32"}
    assert file.size_bytes == meta.size_bytes > 0


def test_weight_from_example_images(service, hub_env):
    image = {"url": "w.jpeg", "type": "image", "meta": {"prompt": "cat <lora:Weighted:0.6>"}}
    model_id, version_id = hub_env.add_civitai_model("Weighted", images=[image, image, {**image, "meta": None}])
    meta = service.get_model_details(model_id)
    assert (meta.recommended_weight, meta.recommended_weight_source) == (0.6, "civitai.images")
    # The model document already had the images' generation data: no second request.
    assert [r.path for r in api_requests(hub_env)] == [f"/api/v1/models/{model_id}"]


def test_version_document_is_asked_only_when_images_lack_generation_data(service, hub_env):
    model_id, version_id = hub_env.add_civitai_model("Bare", images=[{"url": "b.jpeg", "type": "image"}])
    meta = service.get_model_details(model_id)
    assert meta.recommended_weight is None and meta.recommended_weight_source == ""
    assert [r.path for r in api_requests(hub_env)] == [
        f"/api/v1/models/{model_id}",
        f"/api/v1/model-versions/{version_id}",
    ]


def test_get_model_version_adds_the_models_tags_and_description(service, hub_env):
    model_id, version_id = hub_env.add_civitai_model(
        "Versioned", type="LORA", description="<p>weight 0.6</p>", tags=["t1"], settings={"strength": 0.75}
    )
    meta = service.get_model_version(version_id)
    assert meta.model_id == f"civitai:{model_id}@{version_id}"
    assert meta.tags == ["t1"] and meta.description == "weight 0.6"
    assert (meta.recommended_weight, meta.recommended_weight_source) == (0.75, "civitai.settings")
    assert [r.path for r in api_requests(hub_env)] == [
        f"/api/v1/model-versions/{version_id}",
        f"/api/v1/models/{model_id}",
    ]


def test_get_model_details_of_a_named_version_and_references(service, anime_catalog):
    mixed_id, old_version = anime_catalog["mixed"]
    assert service.get_model_details(mixed_id).version == "v2-sd15"  # newest by default
    assert service.get_model_details(mixed_id, old_version).version_id == str(old_version)
    for ref in (
        f"civitai:{mixed_id}@{old_version}",
        f"urn:air:sdxl:lora:civitai:{mixed_id}@{old_version}",
        f"https://civitai.com/models/{mixed_id}/slug?modelVersionId={old_version}",
    ):
        assert service.get_model_details(ref).version_id == str(old_version)
        assert service.lookup(ref).version_id == str(old_version)
    assert service.lookup(f"civitai:@{old_version}").model_id == f"civitai:{mixed_id}@{old_version}"
    with pytest.raises(InvalidReference):
        service.get_model_details("owner/repo")
    with pytest.raises(NotFound, match="has no version 1"):
        service.get_model_details(mixed_id, 1)


def test_recorded_version_by_id_and_hash(service):
    meta = service.get_model_version(1387174)
    assert meta.model_id == "civitai:1231067@1387174"
    assert meta.trigger_words == ["ppstorybook"]
    assert meta.air == "urn:air:flux1:lora:civitai:1231067@1387174"
    by_hash = service.find_by_hash("9753338AB6")
    assert by_hash is not None and by_hash.model_id == meta.model_id
    assert service.find_by_hash("34a22376739d").version_id == "1387174"  # AutoV3, lower-case


def test_find_by_hash_describes_the_matching_file(service, hub_env):
    fp32, fp16 = b"fp32 weights " * 5000, b"fp16 weights " * 3000
    model_id, version_id = hub_env.add_civitai_model(
        "Two Files",
        type="Checkpoint",
        files=[
            {"name": "two_fp16.safetensors", "data": fp16, "fp": "fp16", "size": "pruned"},
            {"name": "two_fp32.safetensors", "data": fp32, "fp": "fp32", "size": "full"},
        ],
    )
    sha32 = hashlib.sha256(fp32).hexdigest()
    meta = service.find_by_hash(sha32.upper())
    assert meta.model_id == f"civitai:{model_id}@{version_id}"
    assert meta.sha256 == sha32 and meta.size_bytes == len(fp32)
    assert service.find_by_hash("0" * 64) is None
    with pytest.raises(InvalidReference):
        service.find_by_hash("not-a-hash")


def test_find_by_hashes_batches(service, hub_env):
    known = {}
    for i in range(5):
        data = f"model {i} ".encode() * 1000
        model_id, version_id = hub_env.add_civitai_model(
            f"Batch {i}", files=[{"name": f"b{i}.safetensors", "data": data}]
        )
        known[hashlib.sha256(data).hexdigest()] = f"civitai:{model_id}@{version_id}"
    autov2 = next(iter(known))[:10]
    service.hash_batch = 2
    found = service.find_by_hashes([*known, autov2.upper(), "f" * 64])
    assert {h: m.model_id for h, m in found.items() if h in known} == known
    assert found[autov2].model_id == known[next(iter(known))]
    assert "f" * 64 not in found
    # 6 SHA256s, 2 per batch; the AutoV2 alone (the batch endpoint takes SHA256s only)
    assert len(api_requests(hub_env, "/by-hash", method="POST")) == 3
    assert [r.path for r in api_requests(hub_env, "/by-hash/", method="GET")] == [
        f"/api/v1/model-versions/by-hash/{autov2.upper()}"
    ]
    assert len(api_requests(hub_env, "/api/v1/models", method="GET")) == 1  # the models, by ids, at once


def test_not_found_routes_carry_the_servers_reason(service):
    with pytest.raises(NotFound, match="No model with id 999"):
        service.get_model_details(999)
    with pytest.raises(NotFound, match="Model not found"):
        service.get_model_version(123)
    with pytest.raises(NotFound, match="File not found"):
        service._signed_url(123, None)
    with pytest.raises(NotFound, match="CivitAI knows no file"):
        service.lookup("a" * 64)


# --- downloads -------------------------------------------------------------------------------------


def test_download_places_by_type_when_no_folder_is_given(service, hub_env):
    model_id, version_id = hub_env.add_civitai_model("Placed", type="LORA")
    result = service.download_model(model_id, version_id)
    assert result.path == models_root() / "loras" / "Placed.safetensors"
    assert result.path.is_file() and not Path(str(result.path) + ".part").exists()
    assert result.metadata.local_path == result.path
    again = service.download_model(f"civitai:{model_id}@{version_id}")
    assert again.reused and again.path == result.path and again.sha256 == result.sha256
    # The identical file was kept: the download route was not asked again.
    assert len(api_requests(hub_env, "/api/download/")) == 1


def test_download_reports_progress_to_the_caller(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("Progressing", type="LORA")
    events = []
    service.download_model(model_id, version_id, tmp_path, progress=events.append)
    assert events and events[-1].state == "done"


def test_download_prefers_pruned_fp16_safetensors(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model(
        "Big Checkpoint",
        type="Checkpoint",
        files=[
            {"name": "big_full_fp32.safetensors", "data": b"a" * 3000, "size": "full", "fp": "fp32"},
            {"name": "big_full.ckpt", "data": b"b" * 2000, "format": "PickleTensor", "size": "full", "fp": "fp16"},
            {"name": "big_pruned_fp16.safetensors", "data": b"c" * 1000, "size": "pruned", "fp": "fp16"},
        ],
    )
    result = service.download_model(model_id, version_id, tmp_path)
    assert result.path.name == "big_pruned_fp16.safetensors"
    assert result.path.read_bytes() == b"c" * 1000
    assert result.metadata.sha256 == hashlib.sha256(b"c" * 1000).hexdigest()


def test_download_of_the_file_a_url_names(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model(
        "Selectable",
        type="Checkpoint",
        files=[
            {"name": "sel_pruned.safetensors", "data": b"p" * 500, "size": "pruned", "fp": "fp16"},
            {"name": "sel_full.safetensors", "data": b"f" * 800, "size": "full", "fp": "fp32"},
        ],
    )
    url = f"{hub_env.civitai_url}/api/download/models/{version_id}?type=Model&format=SafeTensor&size=full&fp=fp32"
    result = service.download_model(url, download_dir=tmp_path)
    assert result.path.name == "sel_full.safetensors" and result.path.read_bytes() == b"f" * 800
    [route] = api_requests(hub_env, "/api/download/")
    assert "fileId=" in route.query  # the exact file is asked for


def test_hostile_names_stay_inside_the_folder(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("Evil", files=[{"name": "../../evil.safetensors"}])
    hub_env.faults.hostile_filename = "../../../etc/passwd"
    result = service.download_model(model_id, version_id, tmp_path / "loras")
    assert result.path == tmp_path / "loras" / "evil.safetensors"
    home = Path(os.environ["HUBLOADER_HOME"])  # the download lock lives there, not beside the model
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if home not in (p, *p.parents))
    assert files == ["loras", "loras/evil.safetensors"]


def test_pickle_files_need_permission(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model(
        "Old Pickle", type="Checkpoint", files=[{"name": "old.ckpt", "data": b"x" * 100, "format": "PickleTensor"}]
    )
    with pytest.raises(PickleNotAllowed, match="old.ckpt"):
        service.download_model(model_id, version_id, tmp_path)
    assert not any(tmp_path.iterdir())
    result = service.download_model(model_id, version_id, tmp_path, allow_pickle=True)
    assert result.path.name == "old.ckpt"


# --- error routes ----------------------------------------------------------------------------------


def test_login_required(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("Members Only", login_required=True)
    with pytest.raises(AuthRequired, match="requires you to be logged in") as caught:
        service.download_model(model_id, version_id, tmp_path)
    assert caught.value.service == "civitai"  # the fact; the command line says what to do
    assert "CIVITAI_API_TOKEN" in explain(caught.value, CLI)
    assert not any(tmp_path.iterdir())
    hub_env.civitai_tokens.add(TOKEN)
    keyed = CivitAIService(api_key=TOKEN, rate_limit=200)
    assert keyed.download_model(model_id, version_id, tmp_path).path.is_file()


def test_downloads_disabled(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("No Downloads", downloads_disabled=True)
    with pytest.raises(DownloadsDisabled, match="disabled downloads"):
        service.download_model(model_id, version_id, tmp_path)


def test_archived_model_is_not_found_with_the_reason(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("Gone", archived=True)
    assert service.get_model_details(model_id).extra  # its page and metadata stay readable
    with pytest.raises(NotFound, match="archived"):
        service.download_model(model_id, version_id, tmp_path)
    with pytest.raises(NotFound, match="archived"):  # a pasted download URL reaches the 410 itself
        service.download_model(f"{hub_env.civitai_url}/api/download/models/{version_id}", download_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_early_access(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("Early", early_access=True)
    with pytest.raises(EarlyAccess, match="Early Access.*until 20") as caught:
        service.download_model(model_id, version_id, tmp_path)
    assert "buy access" in str(caught.value)
    hub_env.civitai_tokens.add(TOKEN)
    hub_env.grant(version_id, TOKEN)
    assert CivitAIService(api_key=TOKEN, rate_limit=200).download_model(model_id, version_id, tmp_path).path.is_file()


def test_login_page_instead_of_json(service, hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("Html")
    hub_env.faults.html_login = True
    with pytest.raises(AuthRequired, match="login page"):
        service.download_model(model_id, version_id, tmp_path)
    assert not any(tmp_path.rglob("*.safetensors"))


def test_rate_limited_requests_are_retried_after_retry_after(service, hub_env):
    model_id, _ = hub_env.add_civitai_model("Busy")
    hub_env.faults.update(rate_limit=2, retry_after=0)
    assert service.get_model_details(model_id).name == "Busy"
    assert len(api_requests(hub_env, f"/models/{model_id}")) == 3


def test_server_errors_are_retried(service, hub_env):
    model_id, _ = hub_env.add_civitai_model("Flaky")
    hub_env.faults.server_errors = 2
    assert service.get_model_details(model_id).name == "Flaky"


def test_rate_limited_after_retries(service, hub_env):
    hub_env.faults.update(rate_limit=10, retry_after=0)
    with pytest.raises(RateLimited, match="Too Many Requests") as caught:
        service.get_model_details(1)
    assert caught.value.retry_after == 0
    assert len(api_requests(hub_env)) == service.max_retries + 1


def test_a_long_retry_after_is_not_waited_out(service, hub_env):
    hub_env.faults.update(rate_limit=1, retry_after=3600)
    with pytest.raises(RateLimited) as caught:
        service.get_model_details(1)
    assert caught.value.retry_after == 3600
    assert len(api_requests(hub_env)) == 1


def test_unreachable(monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CIVITAI_ENDPOINT", f"http://127.0.0.1:{port}")
    service = CivitAIService(api_key=TOKEN, rate_limit=200)
    service.retry_backoff = 0.01
    with pytest.raises(NetworkError, match=f"127.0.0.1:{port} is unreachable") as caught:
        service.search_models("anything")
    message = str(caught.value)
    assert TOKEN not in message
    # One short line: what, why in a few words, what to do; not the client's text with the request URL.
    assert "(connection refused)" in message and "CIVITAI_ENDPOINT" in message
    assert (
        "\n" not in message and len(message) < 200 and "query=" not in message and "HTTPConnectionPool" not in message
    )
    assert isinstance(caught.value.__cause__, requests.ConnectionError)  # kept for --verbose tracebacks


def test_a_silent_server_is_reported_as_a_timeout(service, hub_env):
    hub_env.faults.update(latency=2.0)
    service.timeout, service.max_retries = 0.2, 0
    with pytest.raises(NetworkError, match=r"is unreachable \(timed out\)") as caught:
        service.get_model_details(4384)
    assert isinstance(caught.value.__cause__, requests.Timeout)


def test_a_refused_key_says_so(hub_env, tmp_path):
    service = CivitAIService(api_key="not-a-valid-key-" + TOKEN, rate_limit=200)
    with pytest.raises(AuthRequired, match="refused the API key.*Invalid API key") as caught:
        service.get_model_details(4384)
    assert TOKEN not in str(caught.value)


# --- the API key ---------------------------------------------------------------------------------


def test_the_key_goes_only_as_a_header_to_civitai(hub_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    hub_env.civitai_tokens.add(TOKEN)
    model_id, version_id = hub_env.add_civitai_model("Keyed", login_required=True)
    service = CivitAIService(api_key=TOKEN, rate_limit=200)
    service.search_models("keyed")
    service.get_model_version(version_id)
    service.find_by_hashes(["0" * 64])
    result = service.download_model(model_id, version_id, tmp_path)
    assert result.path.is_file()

    civitai = [r for r in hub_env.requests if r.host == "civitai" and not r.path.startswith("/_fake/")]
    assert civitai and all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in civitai)
    assert all(r.headers.get("User-Agent", "").startswith("hubloader/") for r in civitai)
    others = [r for r in hub_env.requests if r.host != "civitai"]
    assert others and not any("Authorization" in r.headers for r in others)  # the signed CDN URL got no key
    assert not any(TOKEN in r.query or TOKEN in r.path for r in hub_env.requests)
    assert TOKEN not in repr(service) and TOKEN not in caplog.text
    assert TOKEN not in repr(result) and TOKEN not in str(result.metadata.to_dict())


def test_key_from_the_environment(hub_env, monkeypatch):
    monkeypatch.setenv("CIVITAI_API_TOKEN", TOKEN)
    hub_env.civitai_tokens.add(TOKEN)
    service = CivitAIService(rate_limit=200)
    assert service.api_key.reveal() == TOKEN
    service.get_model_details(4384)
    assert api_requests(hub_env)[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_no_key_no_header(service, hub_env):
    service.get_model_details(4384)
    assert "Authorization" not in api_requests(hub_env)[-1].headers


@pytest.mark.parametrize(
    ("rules", "registered", "error"),
    [
        ({"login_required": True}, False, AuthRequired),  # the server refuses the key itself
        ({"downloads_disabled": True}, True, DownloadsDisabled),
        ({"early_access": True}, True, EarlyAccess),
    ],
)
def test_no_error_message_contains_the_key(hub_env, tmp_path, monkeypatch, caplog, rules, registered, error):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CIVITAI_API_TOKEN", TOKEN)
    if registered:
        hub_env.civitai_tokens.add(TOKEN)
    model_id, version_id = hub_env.add_civitai_model("Guarded", **rules)
    service = CivitAIService(rate_limit=200)
    with pytest.raises(error) as caught:
        service.download_model(model_id, version_id, tmp_path)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value) and TOKEN not in caplog.text


def test_reference_parsing_is_shared_with_refs():
    assert parse_reference("civitai:1@2").model_id == 1  # the id scheme in ModelMetadata.model_id


def test_short_hashes_never_go_into_a_batch_and_a_refused_batch_falls_back_to_single_lookups(service, hub_env):
    """CivitAI's batch by-hash takes SHA256s only (≤ 100): an AutoV2 from an A1111 infotext is asked alone,
    and a batch the server refuses as a whole (here: over its cap) is asked hash by hash instead of lost."""
    data = b"inkwash lora " * 2000
    model_id, version_id = hub_env.add_civitai_model("Inkwash", files=[{"name": "ink.safetensors", "data": data}])
    sha = hashlib.sha256(data).hexdigest()
    autov2 = sha[:10]
    short = service.find_by_hashes([autov2])
    assert short[autov2].model_id == f"civitai:{model_id}@{version_id}"
    assert api_requests(hub_env, "/by-hash", method="POST") == []

    hub_env.requests.clear()
    service.hash_batch = 101  # more than the server takes in one request
    unknown = [f"{i:064x}" for i in range(100)]
    found = service.find_by_hashes([sha, *unknown])
    assert found[sha].model_id == f"civitai:{model_id}@{version_id}" and len(found) == 1
    (refused,) = api_requests(hub_env, "/by-hash", method="POST")
    assert len(api_requests(hub_env, "/by-hash/", method="GET")) == 101  # every hash of the refused batch, alone


def test_every_version_path_carries_the_versions_air(service, hub_env):
    model_id, version_id = hub_env.add_civitai_model("Air Lora", type="LORA", base_model="SDXL 1.0")
    expected = f"urn:air:sdxl:lora:civitai:{model_id}@{version_id}"
    sha256 = service.get_model_details(model_id).sha256
    by_version = service.get_model_version(version_id)
    by_hash = service.find_by_hash(sha256)
    by_hashes = service.find_by_hashes([sha256, sha256[:10]])
    assert by_hash is not None and set(by_hashes) == {sha256, sha256[:10]}
    assert {m.air for m in (by_version, by_hash, *by_hashes.values())} == {expected}
    assert service.lookup(f"civitai:@{version_id}").air == expected

    # A version document without ``air`` (older answers) whose model is hidden (404): built from what it says.
    document = {k: v for k, v in hub_env.civitai.version(version_id).items() if k != "air"}
    hub_env.civitai.recorded_versions[version_id] = document
    del hub_env.civitai.models[model_id]
    bare = service.get_model_version(version_id)
    assert bare.air == expected and bare.model_id == f"civitai:{model_id}@{version_id}"


def test_get_of_a_present_civitai_file_works_with_hf_offline(hub_env, tmp_path):
    from tests.test_cli import hubloader

    model_id, version_id = hub_env.add_civitai_model("Offline Lora", type="LORA")
    target = ["--to", str(tmp_path / "models")]
    for ref in (f"civitai:{model_id}@{version_id}", f"civitai:{model_id}"):
        first = hubloader("get", ref, *target)
        assert first.returncode == 0, first.stderr
        hub_env.bytes_sent.clear()
        again = hubloader("get", ref, *target, env={"HF_HUB_OFFLINE": "1"})
        assert again.returncode == 0, again.stderr
        assert "Already present" in again.stdout and hub_env.bytes_sent.total() == 0


def test_get_of_a_present_pinned_civitai_version_makes_no_request(hub_env, tmp_path):
    """civitai:M@V (and its AIR) already placed and recorded: re-get asks nothing, even with CivitAI unreachable."""
    from tests.test_cli import hubloader

    model_id, version_id = hub_env.add_civitai_model("Pinned Lora", type="LORA")
    target = ["--to", str(tmp_path / "models")]
    first = hubloader("get", f"civitai:{model_id}@{version_id}", *target)
    assert first.returncode == 0, first.stderr
    air = CivitAIService().get_model_version(version_id).air
    hub_env.requests.clear()
    dead = {"CIVITAI_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    for ref in (f"civitai:{model_id}@{version_id}", air):
        again = hubloader("get", ref, *target, env=dead)
        assert again.returncode == 0, (ref, again.stderr)
        assert "Already present" in again.stdout
    assert hub_env.requests == []
    # Another folder is not "present": the source is asked (and, unreachable, says so in one line).
    elsewhere = hubloader("get", f"civitai:{model_id}@{version_id}", "--to", str(tmp_path / "other"), env=dead)
    assert elsewhere.returncode != 0 and len(elsewhere.stderr.strip().splitlines()) == 1
