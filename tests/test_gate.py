"""The gate every download passes (hubloader/gate): hosts, redirects, destinations, server-named paths,
pickle bytes and tokens, against the loopback fake servers. Each case is one a download took before the gate."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest

from hubloader import pipeline
from hubloader.core.errors import UnsafeFile
from hubloader.core.metadata import ModelMetadata, Source
from hubloader.core.settings import Secret
from hubloader.engine.download import download_file
from hubloader.gate.fetch import fetch_file
from hubloader.gate.policy import (
    DownloadRefused,
    check_commit,
    check_host,
    check_repo_path,
    check_sha256,
    host_key,
    host_to_confirm,
    token_for,
)
from hubloader.gate.request import FileRequest
from hubloader.sources.civitai import CivitAIService
from hubloader.sources.huggingface import HuggingFaceHubService
from tests.fakehub.modelfiles import safetensors_bytes

TOKEN = "civitai-gate-test-key-0123456789"


@pytest.fixture
def foreign_cdn(hub_env, monkeypatch):
    """The fake hubs with their endpoints configured, and the CDN host *not* allowed: a host like any other."""
    monkeypatch.delenv("HUBLOADER_ALLOWED_HOSTS", raising=False)
    return hub_env


def _lora_bytes(seed: int = 0) -> bytes:
    return safetensors_bytes({"lora_up.weight": ("F16", [4, 4])}, seed=seed)


def _cdn_requests(hub, path: str) -> list:
    return [r for r in hub.requests if r.host == "cdn" and r.path == path]


# --- hosts ---------------------------------------------------------------------------------------------


def test_a_foreign_host_without_a_hash_is_refused_before_any_request_reaches_it(foreign_cdn, tmp_path):
    url = foreign_cdn.add_file("/files/any.safetensors", _lora_bytes())

    with pytest.raises(DownloadRefused, match="not a known model host"):
        pipeline.fetch(url, tmp_path, kind="loras")

    assert _cdn_requests(foreign_cdn, "/files/any.safetensors") == []
    assert not (tmp_path / "any.safetensors").exists()


def test_a_foreign_host_needs_both_the_published_hash_and_a_confirmation(foreign_cdn, tmp_path):
    data = _lora_bytes()
    url = foreign_cdn.add_file("/files/known.safetensors", data)
    known = ModelMetadata(
        model_id=url, name="known", source=Source.URL, remote_url=url, sha256=hashlib.sha256(data).hexdigest()
    )

    with pytest.raises(DownloadRefused):
        pipeline.fetch(known, tmp_path, kind="loras")  # a hash, but nobody confirmed the host
    assert _cdn_requests(foreign_cdn, "/files/known.safetensors") == []

    placed = pipeline.fetch(known, tmp_path, kind="loras", confirmed=True)
    assert placed.path.read_bytes() == data


def test_a_redirect_to_a_foreign_host_is_refused_at_that_hop(hub_env, tmp_path):
    hub_env.add_file("/files/elsewhere.safetensors", _lora_bytes())
    # The same fake server under another name: a host the gate has never been told about.
    foreign = f"http://localhost:{hub_env.ports['cdn']}/files/elsewhere.safetensors"
    url = hub_env.add_redirect("/go/elsewhere.safetensors", foreign)

    with pytest.raises(DownloadRefused, match="localhost"):
        pipeline.fetch(url, tmp_path, kind="loras")

    assert _cdn_requests(hub_env, "/go/elsewhere.safetensors")  # the allowed hop was asked…
    assert _cdn_requests(hub_env, "/files/elsewhere.safetensors") == []  # …the foreign one never
    assert not (tmp_path / "elsewhere.safetensors").exists()


# --- server data used in paths --------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["../x.pth", "weights/../../x.pth"])
def test_a_hostile_hf_sibling_name_is_refused(hub_env, hostile):
    """(An absolute name cannot be served by the fake, which keys files by path; check_repo_path's test has it.)"""
    hub_env.add_hf_repo("acme/hostile", {"model.safetensors": _lora_bytes(), hostile: b"\x80\x04K\x01."})
    service = HuggingFaceHubService()

    with pytest.raises(DownloadRefused, match="outside its folder"):
        service.download_model("acme/hostile", prefer_safetensors=False)

    assert not any(p.suffix == ".pth" for p in Path(service._cache()).rglob("*"))


def test_server_data_used_in_paths_is_checked():
    assert check_commit("a" * 40) == "a" * 40
    assert check_sha256("AB" * 32) == "ab" * 32
    assert check_repo_path("unet/diffusion_pytorch_model.safetensors")
    for bad_commit in ("main", "../" + "a" * 37, "A" * 40):
        with pytest.raises(DownloadRefused):
            check_commit(bad_commit)
    with pytest.raises(DownloadRefused):
        check_sha256("../blobs")
    for bad_path in ("../x.pth", "/etc/x.pth", "a/../../x.pth", "a\\..\\x.pth", "C:x.pth", "a//b.pth"):
        with pytest.raises(DownloadRefused):
            check_repo_path(bad_path)


# --- destination ----------------------------------------------------------------------------------------


def test_an_existing_different_file_is_never_overwritten_and_no_byte_is_fetched(hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model("Kept", files=[{"name": "kept.safetensors"}])
    mine = tmp_path / "kept.safetensors"
    mine.write_bytes(b"the user's own file")
    also_mine = tmp_path / f"kept-{version_id}.safetensors"  # where a same-named different file goes apart
    also_mine.write_bytes(b"the user's other file")

    with pytest.raises(DownloadRefused, match=f"kept-{version_id}.safetensors"):
        CivitAIService(rate_limit=200).download_model(model_id, version_id, tmp_path)

    assert mine.read_bytes() == b"the user's own file" and also_mine.read_bytes() == b"the user's other file"
    assert hub_env.bytes_sent.total() == 0

    also_mine.unlink()
    result = CivitAIService(rate_limit=200).download_model(model_id, version_id, tmp_path)
    assert Path(result.path) == also_mine and mine.read_bytes() == b"the user's own file"


def test_a_plain_url_never_overwrites_a_different_file(hub_env, tmp_path):
    url = hub_env.add_file("/files/mine.safetensors", _lora_bytes())
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"something else")

    with pytest.raises(DownloadRefused, match="mine.safetensors"):
        pipeline.fetch(url, tmp_path, kind="loras")

    assert mine.read_bytes() == b"something else"
    assert hub_env.bytes_sent.total() == 0


def test_the_same_file_is_reused_without_a_byte(hub_env, tmp_path):
    data = _lora_bytes(seed=3)
    model_id, version_id = hub_env.add_civitai_model("Same", files=[{"name": "same.safetensors", "data": data}])
    (tmp_path / "same.safetensors").write_bytes(data)

    result = CivitAIService(rate_limit=200).download_model(model_id, version_id, tmp_path)

    assert result.reused and hub_env.bytes_sent.total() == 0


@pytest.mark.parametrize("name", ["../escape.safetensors", "sub/dir.safetensors", "..", ""])
def test_a_destination_name_must_be_a_plain_file_name(hub_env, tmp_path, name):
    url = hub_env.add_file("/files/n.safetensors", _lora_bytes())
    with pytest.raises(DownloadRefused):
        fetch_file(FileRequest(url=url, folder=tmp_path / "loras", name=name))
    assert _cdn_requests(hub_env, "/files/n.safetensors") == []


# --- trust ----------------------------------------------------------------------------------------------


def test_pickle_bytes_under_a_safetensors_name_are_refused(hub_env, tmp_path):
    url = hub_env.add_file("/files/sneaky.safetensors", pickle.dumps({"weights": [1, 2, 3]}, protocol=4))

    with pytest.raises(UnsafeFile, match="pickle"):
        pipeline.fetch(url, tmp_path, kind="loras", allow_pickle=True)

    assert not (tmp_path / "sneaky.safetensors").exists()


# --- tokens ---------------------------------------------------------------------------------------------


def test_a_token_is_never_sent_to_a_foreign_host(foreign_cdn, tmp_path):
    data = _lora_bytes()
    url = foreign_cdn.add_file("/files/tokened.safetensors", data)
    request = FileRequest(
        url=url,
        folder=tmp_path,
        name="tokened.safetensors",
        sha256=hashlib.sha256(data).hexdigest(),
        token_service="civitai",
        token=Secret(TOKEN),
        confirmed=True,
    )

    fetch_file(request)

    seen = _cdn_requests(foreign_cdn, "/files/tokened.safetensors")
    assert seen and not any("Authorization" in r.headers or TOKEN in r.query for r in seen)


def test_a_token_goes_over_https_or_loopback_only(monkeypatch, tmp_path):
    def request(url: str) -> FileRequest:
        return FileRequest(url=url, folder=tmp_path, name="m.safetensors", token_service="civitai", token=Secret(TOKEN))

    monkeypatch.setenv("CIVITAI_ENDPOINT", "http://civitai.example")
    assert token_for(request("http://civitai.example/api/download/models/1"), "http://civitai.example/x") is None
    monkeypatch.setenv("CIVITAI_ENDPOINT", "https://civitai.example")
    assert token_for(request("https://civitai.example/x"), "https://civitai.example/x") == Secret(TOKEN)
    assert token_for(request("https://civitai.example/x"), "https://other.example/x") is None
    monkeypatch.setenv("CIVITAI_ENDPOINT", "http://127.0.0.1:9")
    assert token_for(request("http://127.0.0.1:9/x"), "http://127.0.0.1:9/x") == Secret(TOKEN)


# --- previews -------------------------------------------------------------------------------------------


def test_a_preview_comes_from_a_known_host_only(foreign_cdn, monkeypatch):
    url = foreign_cdn.add_file("/images/p.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, content_type="image/png")

    assert pipeline.fetch_preview(url) is None
    assert _cdn_requests(foreign_cdn, "/images/p.png") == []

    monkeypatch.setenv("HUBLOADER_ALLOWED_HOSTS", foreign_cdn.cdn_url)
    assert pipeline.fetch_preview(url).startswith(b"\x89PNG")


# --- confirmed hosts ------------------------------------------------------------------------------------


def _foreign_request(url: str, folder: Path, data: bytes, **kwargs) -> FileRequest:
    return FileRequest(
        url=url, folder=folder, name=url.rsplit("/", 1)[-1], sha256=hashlib.sha256(data).hexdigest(), **kwargs
    )


def test_a_confirmed_host_is_fetched_only_for_a_file_with_its_published_hash(foreign_cdn, tmp_path):
    data = _lora_bytes(seed=5)
    url = foreign_cdn.add_file("/files/confirmed.safetensors", data)
    host = host_key(url)  # 127.0.0.1:<port>, as a user types it

    for unconfirmed in ({}, {"confirmed_hosts": frozenset({"elsewhere.example"})}):
        with pytest.raises(DownloadRefused, match="not a known model host"):
            fetch_file(_foreign_request(url, tmp_path, data, **unconfirmed))
    no_hash = FileRequest(url=url, folder=tmp_path, name="confirmed.safetensors", confirmed_hosts=frozenset({host}))
    with pytest.raises(DownloadRefused, match="SHA256"):
        fetch_file(no_hash)  # confirmed, but nothing says which bytes: refused whatever the answer
    assert _cdn_requests(foreign_cdn, "/files/confirmed.safetensors") == []

    result = fetch_file(_foreign_request(url, tmp_path, data, confirmed_hosts=frozenset({host})))
    assert result.path.read_bytes() == data


def test_a_confirmed_host_that_redirects_elsewhere_is_refused_at_that_hop(foreign_cdn, tmp_path):
    data = _lora_bytes(seed=6)
    foreign_cdn.add_file("/files/moved.safetensors", data)
    elsewhere = f"http://localhost:{foreign_cdn.ports['cdn']}/files/moved.safetensors"
    url = foreign_cdn.add_redirect("/go/moved.safetensors", elsewhere)

    for request in (
        _foreign_request(url, tmp_path, data, confirmed_hosts=frozenset({host_key(url)})),
        _foreign_request(url, tmp_path, data, confirmed=True),  # confirmed: the request's own host, not its hops
    ):
        with pytest.raises(DownloadRefused, match="localhost"):
            fetch_file(request)
    assert _cdn_requests(foreign_cdn, "/go/moved.safetensors")  # the confirmed hop was asked…
    assert _cdn_requests(foreign_cdn, "/files/moved.safetensors") == []  # …the other one never
    assert not (tmp_path / "moved.safetensors").exists()


# --- CivitAI's storage buckets --------------------------------------------------------------------------

BUCKET = (
    "https://civitai-delivery-worker-prod.5ac0637cfd0766c97916cefa3764fbdf.r2.cloudflarestorage.com/m/1/x.safetensors"
)
LOOKALIKE = "https://civitai-anything.attacker0account.r2.cloudflarestorage.com/x.safetensors"


@pytest.mark.parametrize("url", [BUCKET, LOOKALIKE])
def test_a_storage_bucket_named_by_a_workflow_is_not_a_known_host(hub_env, tmp_path, url):
    """Anyone with a Cloudflare account can name a bucket civitai-*: as the first URL it is a host like any other."""
    for source in ("url", "civitai"):
        request = FileRequest(url=url, folder=tmp_path, name="x.safetensors", source=source)
        with pytest.raises(DownloadRefused, match="not a known model host"):
            fetch_file(request)
    assert host_to_confirm(url) == host_key(url)


def test_a_storage_bucket_is_trusted_as_civitais_redirect(hub_env, tmp_path):
    """Hop 2+ of a CivitAI download (what the real API answers with a 307) passes; the same hop of a plain URL's
    download does not."""
    civitai = FileRequest(
        url=f"{hub_env.civitai_url}/api/download/models/7", folder=tmp_path, name="x.safetensors", source="civitai"
    )
    check_host(civitai, BUCKET)
    check_host(dataclasses.replace(civitai, source="url"), BUCKET)  # a civitai endpoint URL redirects the same way
    plain = FileRequest(url=hub_env.add_file("/files/p.safetensors", _lora_bytes()), folder=tmp_path, name="p")
    with pytest.raises(DownloadRefused):
        check_host(plain, BUCKET)


# --- pickles, scanned before they get their name --------------------------------------------------------


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _torch_zip(payload: bytes) -> bytes:
    """What torch.save writes: a zip whose ``archive/data.pkl`` is the pickle."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


@pytest.mark.parametrize("name, wrap", [("evil.ckpt", bytes), ("evil.pt", _torch_zip)])
def test_a_pickle_that_runs_code_is_refused_before_it_gets_its_name(hub_env, tmp_path, name, wrap):
    url = hub_env.add_file(f"/files/{name}", wrap(pickle.dumps(_RunsACommand(), protocol=4)))

    with pytest.raises(UnsafeFile) as refused:
        pipeline.fetch(url, tmp_path, kind="checkpoints", allow_pickle=True)

    message = str(refused.value)
    assert name in message and "system" in message and "\n" not in message
    assert list(tmp_path.rglob(f"{name}*")) == []  # no final name, no .part kept to resume


def test_a_pickle_that_cannot_be_scanned_is_refused_in_one_line(hub_env, tmp_path):
    url = hub_env.add_file("/files/broken.pt", b"PK\x03\x04" + b"\0" * 256)  # a zip header, then nothing

    with pytest.raises(UnsafeFile, match="could not be scanned") as refused:
        pipeline.fetch(url, tmp_path, kind="checkpoints", allow_pickle=True)

    assert "broken.pt" in str(refused.value) and "\n" not in str(refused.value)
    assert list(tmp_path.rglob("broken.pt*")) == []


def test_a_benign_pickle_lands_when_pickles_are_allowed(hub_env, tmp_path):
    data = pickle.dumps({"state_dict": {"w": [1.0, 2.0]}}, protocol=4)
    url = hub_env.add_file("/files/plain.ckpt", data)

    placed = pipeline.fetch(url, tmp_path, kind="checkpoints", allow_pickle=True)

    assert placed.path.name == "plain.ckpt" and placed.path.read_bytes() == data


def test_the_engine_shows_the_gate_the_part_before_the_final_name(hub_env, tmp_path):
    """What the gate's pickle check sees: the complete .part, while nothing has the final name yet."""
    data = _lora_bytes(seed=9)
    url = hub_env.add_file("/files/seen.safetensors", data)
    dest = tmp_path / "seen.safetensors"
    seen: list[tuple[str, bytes, bool]] = []

    download_file(url, dest, check_part=lambda part: seen.append((part.name, part.read_bytes(), dest.exists())))

    assert seen == [("seen.safetensors.part", data, False)] and dest.read_bytes() == data
