"""hubloader.sources.references: every way a user names a model parses to the right ModelRef, or to a clear InvalidReference."""

from __future__ import annotations

import pytest

from hubloader.core.errors import InvalidReference
from hubloader.core.metadata import BaseModel, ModelType, Source
from hubloader.sources.references import (
    CIVITAI,
    HASH,
    HUGGINGFACE,
    ModelRef,
    civitai_id,
    format_air,
    hf_resolve_url,
    parse_air,
    parse_reference,
)

SHA = "9753338AB693CA82BF89ED77A5D1912879E40051463EC6E330FB9866CE798668"


@pytest.mark.parametrize(
    ("text", "model", "version", "file_id"),
    [
        ("civitai:12345", 12345, None, None),
        ("civitai:12345@67890", 12345, 67890, None),
        ("CivitAI:12345@67890", 12345, 67890, None),
        ("civitai:@67890", None, 67890, None),
        ("urn:air:sdxl:lora:civitai:12345@67890", 12345, 67890, None),
        ("air:sdxl:lora:civitai:12345@67890", 12345, 67890, None),
        ("urn:air:flux1:lora:civitai:1231067@1387174", 1231067, 1387174, None),
        ("urn:air:sdxl:checkpoint:civitai:133005@348913.safetensors", 133005, 348913, None),
        ("urn:air:sdxl:checkpoint:civitai:133005@348913.safetensors+77", 133005, 348913, 77),
        ("urn:air:sdxl:lora:civitai:12345@67890+9", 12345, 67890, 9),
        ("urn:air:sdxl:lora:civitai:12345", 12345, None, None),
        ("https://civitai.com/models/12345", 12345, None, None),
        ("https://civitai.com/models/12345/anime-style-lora", 12345, None, None),
        ("https://civitai.com/models/12345?modelVersionId=67890", 12345, 67890, None),
        ("https://www.civitai.com/models/12345/slug?modelVersionId=67890&foo=1", 12345, 67890, None),
        ("https://civitai.green/models/12345/slug?modelVersionId=67890", 12345, 67890, None),
        ("https://civitai.com/model-versions/67890", None, 67890, None),
        ("https://civitai.com/api/download/models/67890", None, 67890, None),
        ("https://civitai.com/api/download/models/67890?type=Model&format=SafeTensor&fileId=5", None, 67890, 5),
        ("https://civitai.com/api/v1/models/12345", 12345, None, None),
        ("https://api.civitai.com/api/v1/model-versions/67890", None, 67890, None),
    ],
)
def test_civitai_forms(text, model, version, file_id):
    ref = parse_reference(text)
    assert ref.kind == CIVITAI
    assert ref.source is Source.CIVITAI
    assert (ref.model_id, ref.version_id, ref.file_id) == (model, version, file_id)


def test_air_fields_map_to_our_types():
    ref = parse_air("urn:air:sdxl:lora:civitai:12345@67890.safetensors+3")
    assert (ref.ecosystem, ref.air_type, ref.format) == ("sdxl", "lora", "safetensors")
    assert ref.model_type is ModelType.LORA
    assert ref.base_model is BaseModel.SDXL
    assert parse_reference("urn:air:sd1:lycoris:civitai:1@2").model_type is ModelType.LYCORIS
    assert parse_reference("urn:air:flux1:checkpoint:civitai:1@2").base_model is BaseModel.FLUX1
    assert parse_reference("urn:air:weird:thing:civitai:1@2").model_type is None


def test_download_url_keeps_its_file_selectors():
    ref = parse_reference("https://civitai.com/api/download/models/67890?type=Pruned%20Model&format=SafeTensor&fp=fp16")
    assert ref.download_params == (("type", "Pruned Model"), ("format", "SafeTensor"), ("fp", "fp16"))


def test_a_token_in_a_download_url_never_reaches_the_reference():
    ref = parse_reference("https://civitai.com/api/download/models/67890?token=sekrit-civitai-key")
    assert ref.version_id == 67890
    assert "sekrit" not in ref.text and "sekrit" not in repr(ref)
    with pytest.raises(InvalidReference) as caught:
        parse_reference("https://civitai.com/api/download/models/notanumber?token=sekrit-civitai-key")
    assert "sekrit" not in str(caught.value)


def test_configured_civitai_endpoint_host_is_recognised(monkeypatch):
    monkeypatch.setenv("CIVITAI_ENDPOINT", "http://127.0.0.1:8766")
    ref = parse_reference("http://127.0.0.1:8766/models/5?modelVersionId=6")
    assert (ref.model_id, ref.version_id) == (5, 6)
    with pytest.raises(InvalidReference, match="neither"):
        parse_reference("http://127.0.0.1:9999/models/5")


@pytest.mark.parametrize(
    ("text", "repo_id", "revision", "filename", "repo_type"),
    [
        ("owner/repo", "owner/repo", None, None, "model"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-base-1.0", None, None, "model"),
        ("owner/repo/sub/dir/model.safetensors", "owner/repo", None, "sub/dir/model.safetensors", "model"),
        ("owner/repo@v1.0/model.safetensors", "owner/repo", "v1.0", "model.safetensors", "model"),
        ("owner/repo@main", "owner/repo", "main", None, "model"),
        ("owner/repo@refs/pr/3/unet/x.safetensors", "owner/repo", "refs/pr/3", "unet/x.safetensors", "model"),
        ("hf:owner/repo", "owner/repo", None, None, "model"),
        ("hf:datasets/owner/data@v2/file.bin", "owner/data", "v2", "file.bin", "dataset"),
        (
            "https://huggingface.co/owner/repo/resolve/main/sub/model.safetensors?download=true",
            "owner/repo",
            "main",
            "sub/model.safetensors",
            "model",
        ),
        (
            "https://huggingface.co/owner/repo/blob/abc123/model.safetensors",
            "owner/repo",
            "abc123",
            "model.safetensors",
            "model",
        ),
        ("https://hf.co/owner/repo", "owner/repo", None, None, "model"),
        ("https://huggingface.co/owner/repo/tree/dev", "owner/repo", "dev", None, "model"),
        (
            "https://huggingface.co/owner/repo/resolve/refs%2Fpr%2F1/a.gguf",
            "owner/repo",
            "refs/pr/1",
            "a.gguf",
            "model",
        ),
        ("https://huggingface.co/datasets/owner/data/resolve/main/x.json", "owner/data", "main", "x.json", "dataset"),
        ("https://huggingface.co/spaces/owner/app/blob/main/app.py", "owner/app", "main", "app.py", "space"),
        ("https://huggingface.co/gpt2/resolve/main/model.safetensors", "gpt2", "main", "model.safetensors", "model"),
        ("urn:air:sdxl:vae:huggingface:stabilityai/sdxl-vae@main", "stabilityai/sdxl-vae", "main", None, "model"),
        (
            "urn:air:sdxl:lora:huggingface:org/repo/sub/lora.safetensors@v2",
            "org/repo",
            "v2",
            "sub/lora.safetensors",
            "model",
        ),
    ],
)
def test_huggingface_forms(text, repo_id, revision, filename, repo_type):
    ref = parse_reference(text)
    assert ref.kind == HUGGINGFACE
    assert ref.source is Source.HUGGINGFACE
    assert (ref.repo_id, ref.revision, ref.filename, ref.repo_type) == (repo_id, revision, filename, repo_type)


def test_blob_url_is_read_as_its_resolve_url():
    ref = parse_reference("https://huggingface.co/owner/repo/blob/main/sub/model.safetensors")
    assert hf_resolve_url(ref, "https://huggingface.co") == (
        "https://huggingface.co/owner/repo/resolve/main/sub/model.safetensors"
    )
    pr = parse_reference("owner/repo@refs/pr/2/a b.safetensors")
    assert hf_resolve_url(pr, "http://mirror") == "http://mirror/owner/repo/resolve/refs%2Fpr%2F2/a%20b.safetensors"
    with pytest.raises(InvalidReference):
        hf_resolve_url(parse_reference("owner/repo"))


def test_configured_hf_endpoint_host_and_path_prefix(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8765/mirror")
    ref = parse_reference("http://127.0.0.1:8765/mirror/owner/repo/resolve/main/m.safetensors")
    assert (ref.repo_id, ref.revision, ref.filename) == ("owner/repo", "main", "m.safetensors")


@pytest.mark.parametrize(
    ("text", "digest", "types"),
    [
        (SHA, SHA.lower(), ("SHA256", "BLAKE3")),
        ("9753338AB6", "9753338ab6", ("AutoV2",)),
        ("34A22376739D", "34a22376739d", ("AutoV3",)),
        ("F414C813", "f414c813", ("AutoV1", "CRC32")),
        ("crc32:A65AE7B3", "a65ae7b3", ("CRC32",)),
        (f"sha256:{SHA}", SHA.lower(), ("SHA256",)),
        (f"https://civitai.com/api/v1/model-versions/by-hash/{SHA}", SHA.lower(), ("SHA256", "BLAKE3")),
    ],
)
def test_hashes(text, digest, types):
    ref = parse_reference(text)
    assert ref.kind == HASH and ref.source is None
    assert (ref.hash, ref.hash_types) == (digest, types)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "12345",  # which source?
        "justaname",
        "civitai:",
        "civitai:abc",
        "civitai:1@x",
        "urn:air:sdxl:lora:civitai:abc@1",
        "urn:air:sdxl:lora:civitai",
        "urn:air:sdxl:lora:github:foo@1",
        "urn:air:sdxl:lora:huggingface:org/repo@main+5",
        "owner/re--po",
        "owner/../etc",
        "owner/repo/../../etc/passwd",
        "owner/repo//file",
        "owner/repo@/file",
        "-owner/repo",
        "autov2:F414C813",  # an AutoV2 is 10 hex
        "ftp://civitai.com/models/1",
        "https://example.com/models/1",
        "https://civitai.com/models/0",
        "https://civitai.com/models/abc",
        "https://civitai.com/user/somebody",
        "https://huggingface.co/owner/repo/resolve/main",
        "https://huggingface.co/owner/repo/tree/main/sub",
        "https://huggingface.co/owner/repo/discussions/1",
        "https://huggingface.co/owner",
    ],
)
def test_malformed_references_raise_invalid_reference(text):
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert caught.value.hint  # every error says what to do


def test_bare_number_suggests_the_civitai_form():
    with pytest.raises(InvalidReference, match="civitai:12345"):
        parse_reference("12345")


def test_canonical_string_round_trips():
    for text in [
        "civitai:1@2",
        "civitai:7",
        "civitai:@9",
        "owner/repo",
        "owner/repo@v1/a/b.safetensors",
        "hf:datasets/o/d@main/x.bin",
        SHA.lower(),
    ]:
        ref = parse_reference(text)
        assert str(ref) == text
        assert parse_reference(str(ref)) == ref


def test_civitai_id_scheme_and_air_format():
    assert civitai_id(1231067, 1387174) == "civitai:1231067@1387174"
    assert civitai_id(5) == "civitai:5"
    assert civitai_id(None, 9) == "civitai:@9"
    air = format_air("flux1", "lora", "civitai", 1231067, 1387174)
    assert air == "urn:air:flux1:lora:civitai:1231067@1387174"
    assert parse_reference(air) == ModelRef(
        CIVITAI, text=air, model_id=1231067, version_id=1387174, ecosystem="flux1", air_type="lora"
    )
