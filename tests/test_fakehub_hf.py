"""The fake HuggingFace Hub, driven by the real, unmodified huggingface_hub client (newest and oldest supported)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests

from tests.fakehub import FakeHub
from tests.fakehub import modelfiles as mf

pytestmark = pytest.mark.hf

LORA = mf.safetensors_bytes(mf.kohya_lora("sdxl"), mf.kohya_metadata("demo", "sdxl"), seed=1)


@pytest.fixture
def hub(fakehub: FakeHub) -> FakeHub:
    fakehub.add_hf_repo(
        "org/repo",
        {
            "README.md": b"# demo\n",
            "config.json": b'{"a": 1}',
            "lora.safetensors": LORA,
            "unet/diffusion_pytorch_model.safetensors": ("generated", 3_000_000),
            "unet/config.json": b"{}",
        },
        tags=["lora", "text-to-image"],
        pipeline_tag="text-to-image",
        library_name="diffusers",
        downloads=10,
        likes=3,
        card_data={"license": "mit", "base_model": "stabilityai/stable-diffusion-xl-base-1.0"},
    )
    return fakehub


def test_hf_hub_download_lfs_goes_through_cdn(hub: FakeHub, tmp_path: Path):
    from huggingface_hub import hf_hub_download

    hub.valid_hf_tokens.add("hf_x")
    path = hf_hub_download("org/repo", "lora.safetensors", endpoint=hub.hf_url, token="hf_x")
    assert Path(path).read_bytes() == LORA
    blob = Path(path).resolve()
    assert blob.name == hashlib.sha256(LORA).hexdigest()  # the client names blobs by X-Linked-Etag
    cdn = [r for r in hub.requests if r.host == "cdn" and r.method == "GET"]
    assert len(cdn) == 1
    assert "Authorization" not in cdn[0].headers  # token dropped on the cross-host redirect
    assert hub.bytes_sent.total() == len(LORA)


def test_hf_hub_download_small_file_served_directly(hub: FakeHub):
    from huggingface_hub import hf_hub_download

    path = hf_hub_download("org/repo", "config.json", endpoint=hub.hf_url)
    assert Path(path).read_bytes() == b'{"a": 1}'
    git_sha1 = hashlib.sha1(b"blob 8\0" + b'{"a": 1}').hexdigest()
    assert Path(path).resolve().name == git_sha1
    assert not [r for r in hub.requests if r.host == "cdn"]


def test_hf_hub_download_revision_and_commit(hub: FakeHub):
    from huggingface_hub import hf_hub_download

    sha = hub.add_hf_repo("org/repo", {"README.md": b"# v2\n"}, revision="v2")
    assert len(sha) == 40 and sha == hub.add_hf_repo("org/repo", {"README.md": b"# v2\n"}, revision="v2")
    assert Path(hf_hub_download("org/repo", "README.md", revision="v2", endpoint=hub.hf_url)).read_bytes() == b"# v2\n"
    assert Path(hf_hub_download("org/repo", "README.md", revision=sha, endpoint=hub.hf_url)).read_bytes() == b"# v2\n"
    assert Path(hf_hub_download("org/repo", "README.md", endpoint=hub.hf_url)).read_bytes() == b"# demo\n"


def test_refs_pr_revision_is_url_quoted(hub: FakeHub):
    from huggingface_hub import HfApi, hf_hub_download

    hub.add_hf_repo("org/repo", {"README.md": b"# pr\n"}, revision="refs/pr/1")
    path = hf_hub_download("org/repo", "README.md", revision="refs/pr/1", endpoint=hub.hf_url)
    assert Path(path).read_bytes() == b"# pr\n"
    assert (
        HfApi(endpoint=hub.hf_url).model_info("org/repo", revision="refs/pr/1").sha
        == hub.hf.repos["org/repo"].branches["refs/pr/1"]
    )


def test_snapshot_download_with_allow_patterns(hub: FakeHub, tmp_path: Path):
    from huggingface_hub import snapshot_download

    folder = Path(
        snapshot_download("org/repo", endpoint=hub.hf_url, allow_patterns=["unet/*"], cache_dir=tmp_path / "cache")
    )
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    blob = hub.hf.repos["org/repo"].commit("main").files["unet/diffusion_pytorch_model.safetensors"].blob
    assert (folder / "unet/diffusion_pytorch_model.safetensors").read_bytes() == blob.read()


def test_snapshot_download_to_local_dir(hub: FakeHub, tmp_path: Path):
    from huggingface_hub import snapshot_download

    snapshot_download("org/repo", endpoint=hub.hf_url, local_dir=tmp_path / "out")
    assert (tmp_path / "out" / "lora.safetensors").read_bytes() == LORA
    assert (tmp_path / "out" / "unet" / "config.json").exists()


def test_model_info_and_files_metadata(hub: FakeHub):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.hf_url)
    info = api.model_info("org/repo")
    assert info.id == "org/repo" and info.author == "org" and len(info.sha) == 40
    assert info.library_name == "diffusers" and info.pipeline_tag == "text-to-image"
    assert "lora" in info.tags and info.downloads == 10 and info.likes == 3
    assert info.card_data["license"] == "mit"
    assert {s.rfilename for s in info.siblings} == {
        "README.md",
        "config.json",
        "lora.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/config.json",
    }
    assert info.safetensors.total == sum(
        __import__("math").prod(shape) for _, (dtype, shape) in mf.kohya_lora("sdxl").items()
    )
    detailed = api.model_info("org/repo", files_metadata=True)
    lora = next(s for s in detailed.siblings if s.rfilename == "lora.safetensors")
    assert lora.size == len(LORA) and lora.lfs.sha256 == hashlib.sha256(LORA).hexdigest()
    readme = next(s for s in detailed.siblings if s.rfilename == "README.md")
    assert readme.lfs is None and readme.size == 7


def test_list_repo_files_and_tree(hub: FakeHub):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.hf_url)
    hub.hf.tree_page_size = 2  # force several Link pages
    assert sorted(api.list_repo_files("org/repo")) == [
        "README.md",
        "config.json",
        "lora.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    top = {e.path for e in api.list_repo_tree("org/repo")}
    assert top == {"README.md", "config.json", "lora.safetensors", "unet"}
    lfs_entry = next(e for e in api.list_repo_tree("org/repo", "unet") if e.path.endswith(".safetensors"))
    assert lfs_entry.lfs.size == 3_000_000


def test_list_models_search_filter_sort_limit_and_pages(fakehub: FakeHub):
    from huggingface_hub import HfApi

    for i in range(7):
        fakehub.add_hf_repo(
            f"team{i % 2}/sdxl-lora-{i}",
            {"README.md": b"x"},
            tags=["lora"] if i % 3 else ["checkpoint"],
            library_name="diffusers",
            pipeline_tag="text-to-image",
            downloads=100 - i,
            likes=i,
        )
    fakehub.add_hf_repo("other/bert", {"README.md": b"x"}, library_name="transformers", downloads=1000)
    fakehub.hf.page_size = 2
    api = HfApi(endpoint=fakehub.hf_url)
    assert len(list(api.list_models())) == 8  # followed 4 Link pages
    assert [m.id for m in api.list_models(search="LORA-1")] == ["team1/sdxl-lora-1"]
    assert {m.id for m in api.list_models(filter="transformers")} == {"other/bert"}
    lora_ids = [m.id for m in api.list_models(filter=["diffusers", "lora"], sort="likes")]
    assert lora_ids == ["team1/sdxl-lora-5", "team0/sdxl-lora-4", "team0/sdxl-lora-2", "team1/sdxl-lora-1"]
    assert [m.id for m in api.list_models(sort="downloads", limit=3)] == [
        "other/bert",
        "team0/sdxl-lora-0",
        "team1/sdxl-lora-1",
    ]
    assert {m.id for m in api.list_models(author="team1")} == {f"team1/sdxl-lora-{i}" for i in (1, 3, 5)}
    newest = next(iter(api.list_models(sort="created_at", limit=1)))
    assert newest.id == "other/bert"
    full = next(iter(api.list_models(search="bert", full=True)))
    assert full.sha and [s.rfilename for s in full.siblings] == ["README.md"]
    assert next(iter(api.list_models(search="bert"))).siblings is None
    with_card = next(iter(api.list_models(search="lora-0", cardData=True)))
    assert with_card.id == "team0/sdxl-lora-0"
    link = requests.get(fakehub.hf_url + "/api/models", params={"limit": 2}).headers["Link"]
    assert link.startswith(f"<{fakehub.hf_url}/api/models?") and link.endswith('>; rel="next"')


def test_get_safetensors_metadata(hub: FakeHub):
    from huggingface_hub import HfApi

    hub.add_hf_repo("org/single", {"model.safetensors": LORA})
    meta = HfApi(endpoint=hub.hf_url).get_safetensors_metadata("org/single")
    info = meta.files_metadata["model.safetensors"]
    assert info.metadata["ss_output_name"] == "demo"
    assert set(info.tensors) == set(mf.kohya_lora("sdxl"))


def test_missing_repo_revision_and_file_errors(hub: FakeHub):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/nope", "a.bin", endpoint=hub.hf_url)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/repo", "README.md", revision="nope", endpoint=hub.hf_url)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/repo", "missing.bin", endpoint=hub.hf_url)


def test_api_errors(hub: FakeHub):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=hub.hf_url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/nope")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/repo", revision="nope")


def test_gated_repo(hub: FakeHub):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError

    hub.add_hf_repo("org/gated", {"README.md": b"terms", "model.safetensors": LORA}, gated=True)
    hub.valid_hf_tokens.add("hf_nogrant")
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "model.safetensors", endpoint=hub.hf_url)
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "model.safetensors", endpoint=hub.hf_url, token="hf_nogrant")
    assert HfApi(endpoint=hub.hf_url).model_info("org/gated").gated == "manual"  # metadata stays public
    assert Path(hf_hub_download("org/gated", "README.md", endpoint=hub.hf_url)).read_bytes() == b"terms"
    hub.grant("org/gated", "hf_granted")
    path = hf_hub_download("org/gated", "model.safetensors", endpoint=hub.hf_url, token="hf_granted")
    assert Path(path).read_bytes() == LORA


def test_private_repo_and_invalid_token(hub: FakeHub):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    hub.add_hf_repo("org/private", {"README.md": b"p"}, private=True)
    api = HfApi(endpoint=hub.hf_url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/private")
    assert "org/private" not in {m.id for m in api.list_models()}
    hub.grant("org/private", "hf_owner")
    assert api.model_info("org/private", token="hf_owner").private is True
    assert Path(hf_hub_download("org/private", "README.md", endpoint=hub.hf_url, token="hf_owner")).exists()
    with pytest.raises(HfHubHTTPError):
        api.model_info("org/repo", token="hf_unknown")


def test_renamed_repo_redirects(hub: FakeHub):
    from huggingface_hub import HfApi, hf_hub_download

    hub.rename_hf_repo("old-name", "org/repo")
    raw = requests.get(hub.hf_url + "/api/models/old-name", allow_redirects=False)
    assert raw.status_code == 307
    assert raw.headers["Location"] == "/api/models/org/repo"
    assert raw.text == "Temporary Redirect. Redirecting to /api/models/org/repo"
    assert HfApi(endpoint=hub.hf_url).model_info("old-name").id == "org/repo"
    assert Path(hf_hub_download("old-name", "README.md", endpoint=hub.hf_url)).read_bytes() == b"# demo\n"


def test_dropped_connection_mid_body(hub: FakeHub):
    import huggingface_hub
    from huggingface_hub import hf_hub_download

    hub.faults.drop_after_bytes = 1_000_000
    hub.faults.drop_count = 1
    name = "unet/diffusion_pytorch_model.safetensors"
    if int(huggingface_hub.__version__.split(".")[0]) < 1:
        # 0.26 (requests) does not retry a body cut short: ChunkedEncodingError reaches the caller.
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            hf_hub_download("org/repo", name, endpoint=hub.hf_url)
        return
    path = hf_hub_download("org/repo", name, endpoint=hub.hf_url)
    assert os.path.getsize(path) == 3_000_000
    cdn_gets = [r for r in hub.requests if r.host == "cdn" and r.method == "GET"]
    assert len(cdn_gets) == 2  # the client retried after the drop
