"""The fake CivitAI REST v1, over plain HTTP (requests), including its fault switches."""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from pathlib import Path

import pytest
import requests

from tests.fakehub import FakeHub
from tests.fakehub import modelfiles as mf

FIXTURES = Path(__file__).parent / "fixtures" / "civitai"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"


def api(hub: FakeHub, path: str, **params: object) -> requests.Response:
    return requests.get(f"{hub.civitai_url}/api/v1/{path}", params=params)  # type: ignore[arg-type]


def test_recorded_version_served_with_hosts_rewritten(fakehub: FakeHub):
    served = api(fakehub, "model-versions/1387174").json()
    recorded = json.loads((FIXTURES / "model_version_1387174.json").read_text())
    assert served["downloadUrl"] == f"{fakehub.civitai_url}/api/download/models/1387174"
    assert served["images"][0]["url"].startswith(fakehub.cdn_url + "/images/")
    text = json.dumps(served).replace(fakehub.civitai_url, "https://civitai.com")
    text = text.replace(fakehub.cdn_url + "/images", "https://image.civitai.com")
    assert json.loads(text) == recorded
    image = requests.get(served["images"][0]["url"])
    assert image.headers["Content-Type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"


def test_recorded_list_page_and_enums(fakehub: FakeHub):
    recorded = json.loads((FIXTURES / "models_list_checkpoints_highest_rated_page1.json").read_text())
    page = api(fakehub, "models", limit=10, sort="Highest Rated", types="Checkpoint").json()
    assert [m["id"] for m in page["items"]] == [m["id"] for m in recorded["items"]]
    assert set(page["items"][0]) == set(recorded["items"][0])
    assert "civitai.com" not in json.dumps(page)
    enums = api(fakehub, "enums").json()
    assert "LORA" in enums["ModelType"] and "SDXL 1.0" in enums["BaseModel"]


def test_generated_model_has_true_hashes_everywhere(fakehub: FakeHub):
    data = mf.safetensors_bytes(mf.kohya_lora("sdxl"), mf.kohya_metadata("pix", "sdxl"), seed=3)
    model_id, version_id = fakehub.add_civitai_model(
        "Pixel Art XL",
        files=[{"name": "pixel.safetensors", "data": data, "fp": "fp16"}],
        trained_words=["pixel art"],
        settings={"strength": 0.8},
    )
    version = api(fakehub, f"model-versions/{version_id}").json()
    entry = version["files"][0]
    sha = hashlib.sha256(data).hexdigest().upper()
    header_len = int.from_bytes(data[:8], "little")
    assert entry["hashes"]["SHA256"] == sha and entry["hashes"]["AutoV2"] == sha[:10]
    assert entry["hashes"]["AutoV3"] == hashlib.sha256(data[8 + header_len :]).hexdigest()[:12].upper()
    assert entry["hashes"]["CRC32"] == zlib.crc32(data).to_bytes(4, "little").hex().upper()
    assert "AutoV1" not in entry["hashes"]  # CivitAI has none for files under 2 MiB
    assert entry["sizeKB"] == len(data) / 1024 and entry["primary"] is True
    assert version["trainedWords"] == ["pixel art"] and version["settings"] == {"strength": 0.8}
    assert version["air"] == f"urn:air:sdxl:lora:civitai:{model_id}@{version_id}"
    model = api(fakehub, f"models/{model_id}").json()
    assert model["modelVersions"][0]["files"][0]["hashes"] == entry["hashes"]
    for kind in ("SHA256", "AutoV2", "AutoV3", "BLAKE3", "CRC32"):
        assert api(fakehub, f"model-versions/by-hash/{entry['hashes'][kind].lower()}").json()["id"] == version_id
    download = requests.get(version["downloadUrl"])
    assert download.content == data
    assert download.headers["Content-Disposition"] == 'attachment; filename="pixel.safetensors"'


def test_default_files_are_real_safetensors_of_the_right_kind(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("SD Ckpt", type="Checkpoint", base_model="SD 1.5")
    body = requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}").content
    header = json.loads(body[8 : 8 + int.from_bytes(body[:8], "little")])
    assert set(header) == set(mf.sd15_checkpoint())


def test_large_generated_file_has_autov1(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Big", files=[{"name": "big.ckpt", "data": ("generated", 3 << 20)}])
    hashes = api(fakehub, f"model-versions/{version_id}").json()["files"][0]["hashes"]
    body = requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}").content
    assert hashes["AutoV1"] == hashlib.sha256(body[0x100000:0x110000]).hexdigest()[:8].upper()
    assert "AutoV3" not in hashes  # not a safetensors file


def test_search_filters_sort_and_cursor_pages(fakehub: FakeHub):
    for i in range(5):
        fakehub.add_civitai_model(f"Anime Style {i}", stats={"downloadCount": 10 * i, "thumbsUpCount": 5 - i})
    fakehub.add_civitai_model("Pony Thing", base_model="Pony", type="LoCon")
    fakehub.add_civitai_model("Naughty", nsfw=True)
    found = api(fakehub, "models", query="anime style", sort="Most Downloaded").json()["items"]
    assert [m["name"] for m in found] == [f"Anime Style {i}" for i in (4, 3, 2, 1, 0)]
    liked = api(fakehub, "models", query="anime style", sort="Most Liked").json()["items"]
    assert liked[0]["name"] == "Anime Style 0"
    assert [m["name"] for m in api(fakehub, "models", baseModels="Pony").json()["items"]] == ["Pony Thing"]
    both = api(fakehub, "models", types=["LoCon", "TextualInversion"]).json()["items"]
    assert [m["name"] for m in both] == ["Pony Thing"]
    assert "Naughty" not in {m["name"] for m in api(fakehub, "models", types="LORA").json()["items"]}
    assert "Naughty" in {m["name"] for m in api(fakehub, "models", types="LORA", nsfw="true").json()["items"]}
    oldest = api(fakehub, "models", query="anime style", sort="Oldest").json()["items"]
    assert oldest[0]["name"] == "Anime Style 0"
    seen, url = [], f"{fakehub.civitai_url}/api/v1/models?query=anime%20style&limit=2"
    while url:
        page = requests.get(url).json()
        seen += [m["name"] for m in page["items"]]
        url = page["metadata"].get("nextPage")
    assert sorted(seen) == [f"Anime Style {i}" for i in range(5)]
    recent = api(fakehub, "models", types="Checkpoint", period="Week").json()["items"]
    assert recent == []  # the recorded checkpoints were published in 2023-24


def test_list_errors(fakehub: FakeHub):
    assert api(fakehub, "models", sort="Best").status_code == 400
    assert api(fakehub, "models", limit=101).status_code == 400
    assert api(fakehub, "models", query="x", page=1).json() == {
        "error": "Cannot use page param with query search. Use cursor-based pagination."
    }
    assert api(fakehub, "models", page=11, limit=100).status_code == 429


def test_not_found_texts(fakehub: FakeHub):
    assert api(fakehub, "models/999").json() == {"error": "No model with id 999"}
    assert api(fakehub, "models/999").status_code == 404
    assert api(fakehub, "model-versions/999").json() == {"error": "Model not found"}
    assert api(fakehub, "model-versions/by-hash/DEADBEEF").json() == {"error": "Model not found"}
    missing = requests.get(f"{fakehub.civitai_url}/api/download/models/999")
    assert missing.status_code == 404 and missing.json() == {"error": "File not found"}


def test_batch_by_hash(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Batch")
    sha = api(fakehub, f"model-versions/{version_id}").json()["files"][0]["hashes"]["SHA256"]
    url = f"{fakehub.civitai_url}/api/v1/model-versions/by-hash"
    docs = requests.post(url, json=[sha.lower(), "0" * 64]).json()  # SHA256s only; unknown ones are absent
    assert [d["id"] for d in docs] == [version_id]
    assert requests.get(f"{url}/9753338AB6").json()["id"] == 1387174  # a short hash is asked alone
    assert requests.post(url, json={"not": "a list"}).status_code == 400


def test_download_variants_by_query(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model(
        "Two Files",
        files=[
            {"name": "full.safetensors", "data": b"full-bytes", "size": "full", "fp": "fp32"},
            {"name": "pruned.safetensors", "data": b"pruned-bytes", "size": "pruned", "fp": "fp16", "primary": True},
        ],
    )
    base = f"{fakehub.civitai_url}/api/download/models/{version_id}"
    assert requests.get(base).content == b"pruned-bytes"
    assert requests.get(base, params={"size": "full", "fp": "fp32"}).content == b"full-bytes"
    assert requests.get(base, params={"fp": "bf16"}).status_code == 404
    version = api(fakehub, f"model-versions/{version_id}").json()
    secondary = next(f for f in version["files"] if not f["primary"])
    assert "size=full" in secondary["downloadUrl"]


def test_download_redirect_is_signed_and_expires(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Signed", files=[{"name": "s.safetensors", "data": b"0123456789"}])
    first = requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}", allow_redirects=False)
    assert first.status_code == 307 and first.headers["Cache-Control"] == "no-store, max-age=0"
    storage = first.headers["Location"]
    assert storage.startswith(fakehub.cdn_url + "/storage/")
    part = requests.get(storage, headers={"Range": "bytes=4-"})
    assert part.status_code == 206 and part.content == b"456789"
    assert requests.get(storage.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
    fakehub.expire_signed_urls()
    expired = requests.get(storage)
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    fresh = requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}")
    assert fresh.content == b"0123456789"
    fakehub.faults.signed_url_ttl = 0
    assert requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}").status_code == 403


def test_hostile_filename_switch(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Hostile")
    fakehub.faults.hostile_filename = "../../evil.safetensors"
    response = requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}")
    assert response.headers["Content-Disposition"] == 'attachment; filename="../../evil.safetensors"'


def test_non_ascii_filename_uses_rfc5987(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Uni", files=[{"name": "麦橘.safetensors", "data": b"x"}])
    response = requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}")
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"__.safetensors\"; filename*=UTF-8''%E9%BA%A6%E6%A9%98.safetensors"
    )


def test_login_required(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Members", login_required=True)
    url = f"{fakehub.civitai_url}/api/download/models/{version_id}"
    refused = requests.get(url)
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "Unauthorized",
        "message": "The creator of this asset requires you to be logged in to download it",
    }
    as_browser = requests.get(url, headers={"User-Agent": BROWSER_UA})
    assert as_browser.status_code == 200 and as_browser.headers["Content-Type"].startswith("text/html")
    assert as_browser.url.startswith(f"{fakehub.civitai_url}/login?reason=download-auth")
    fakehub.civitai_tokens.add("ck_good")
    assert requests.get(url, params={"token": "ck_good"}).status_code == 200
    assert requests.get(url, headers={"Authorization": "Bearer ck_good"}).status_code == 200
    assert requests.get(url, headers={"Authorization": "Bearer ck_bad"}).status_code == 401


def test_token_sent_to_api_host_only(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Tok")
    fakehub.civitai_tokens.add("ck_good")
    requests.get(f"{fakehub.civitai_url}/api/download/models/{version_id}", headers={"Authorization": "Bearer ck_good"})
    storage = [r for r in fakehub.requests if r.host == "cdn"]
    assert storage and "Authorization" not in storage[0].headers  # requests drops it across hosts


def test_downloads_disabled_and_early_access(fakehub: FakeHub):
    _, disabled = fakehub.add_civitai_model("Disabled", downloads_disabled=True)
    response = requests.get(f"{fakehub.civitai_url}/api/download/models/{disabled}")
    assert response.status_code == 401
    assert response.json()["message"] == "The creator of this asset has disabled downloads on this file"
    _, early = fakehub.add_civitai_model("Early", early_access=True)
    response = requests.get(f"{fakehub.civitai_url}/api/download/models/{early}")
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "Early Access" and body["deadline"]
    assert body["message"] == "This asset is in Early Access. You can use Buzz access it now!"
    fakehub.civitai_tokens.add("ck_buyer")
    fakehub.grant(early, "ck_buyer")
    assert requests.get(f"{fakehub.civitai_url}/api/download/models/{early}", params={"token": "ck_buyer"}).ok


def test_html_login_and_rate_limit_switches(fakehub: FakeHub):
    _, version_id = fakehub.add_civitai_model("Switches")
    url = f"{fakehub.civitai_url}/api/download/models/{version_id}"
    fakehub.faults.html_login = True
    page = requests.get(url)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    fakehub.faults.html_login = False
    fakehub.faults.update(rate_limit=1, retry_after=3)
    limited = api(fakehub, "models")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert api(fakehub, "models").status_code == 200


def test_body_faults_apply_to_storage(fakehub: FakeHub):
    data = mf.safetensors_bytes(mf.kohya_lora("sd15"), seed=9)
    _, version_id = fakehub.add_civitai_model("Faulty", files=[{"name": "f.safetensors", "data": data}])
    url = f"{fakehub.civitai_url}/api/download/models/{version_id}"
    fakehub.faults.wrong_bytes = 100
    corrupted = requests.get(url).content
    assert len(corrupted) == len(data) and corrupted != data
    fakehub.faults.wrong_bytes = None
    fakehub.faults.update(drop_after_bytes=1000, drop_count=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url).content  # noqa: B018
    fakehub.faults.ignore_range = True
    whole = requests.get(url, headers={"Range": "bytes=1000-"})
    assert whole.status_code == 200 and whole.content == data
    # The server counts a piece after its write returns, which may be just after the client has it.
    deadline = time.monotonic() + 5
    while fakehub.bytes_sent.total() < 2 * len(data) + 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fakehub.bytes_sent.total() == 2 * len(data) + 1000


def test_require_token_switch_covers_the_api(fakehub: FakeHub):
    fakehub.faults.require_token = "ck_needed"
    assert api(fakehub, "enums").status_code == 401
    fakehub.civitai_tokens.add("ck_needed")
    assert requests.get(f"{fakehub.civitai_url}/api/v1/enums", params={"token": "ck_needed"}).ok


def test_admin_can_add_models(fakehub: FakeHub):
    created = requests.post(f"{fakehub.civitai_url}/_fake/civitai_models", json={"name": "Remote", "type": "LORA"})
    version_id = created.json()["version_id"]
    assert api(fakehub, f"model-versions/{version_id}").json()["model"]["name"] == "Remote"


@pytest.mark.parametrize(
    "body",
    [["4EAC8949BE"], ["A" * 64, "4EAC8949BE"], ["A" * 64] * 101, "A" * 64, [64]],
    ids=["autov2", "one-short-sinks-all", "over-100", "not-a-list", "not-strings"],
)
def test_batch_by_hash_takes_only_sha256s_as_civitai_does(fakehub, body):
    answer = requests.post(f"{fakehub.civitai_url}/api/v1/model-versions/by-hash", json=body)
    assert answer.status_code == 400
    assert "SHA256" in answer.json()["error"]
