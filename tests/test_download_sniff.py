"""Format sniffing: real model bytes pass, error pages are refused with the server's own words."""

from __future__ import annotations

import pytest

from hubloader.core import errors
from hubloader.core.metadata import ModelFormat
from hubloader.engine.sniff import check_head, detect_format, server_reason
from tests.fakehub.bodies import LOGIN_PAGE
from tests.fakehub.modelfiles import kohya_lora, pickle_checkpoint_bytes, safetensors_bytes


@pytest.mark.parametrize(
    ("head", "found"),
    [
        (safetensors_bytes(kohya_lora()), ModelFormat.SAFETENSORS),
        (pickle_checkpoint_bytes(zip_format=True), ModelFormat.PICKLE),
        (pickle_checkpoint_bytes(zip_format=False), ModelFormat.PICKLE),
        (b"GGUF\x03\x00\x00\x00" + bytes(32), ModelFormat.GGUF),
        (bytes(range(256)), ModelFormat.OTHER),
    ],
)
def test_model_formats_are_recognised_and_accepted(head, found):
    assert detect_format(head) is found
    assert check_head(head, expect="model") is found


def test_login_page_is_auth_required_with_its_title():
    with pytest.raises(errors.AuthRequired, match="Sign in"):
        check_head(LOGIN_PAGE.encode(), content_type="text/html", where="civitai.com")


def test_civitai_json_reasons():
    body = b'{"error":"Unauthorized","message":"The creator of this asset requires you to be logged in to download it"}'
    assert server_reason(body) == (
        "Unauthorized: The creator of this asset requires you to be logged in to download it"
    )
    with pytest.raises(errors.AuthRequired):
        check_head(body, content_type="application/json")
    with pytest.raises(errors.NotAModelFile, match="File not found") as info:
        check_head(b'{"error":"File not found"}')
    assert not isinstance(info.value, errors.AuthRequired)


def test_s3_xml_error_reason():
    body = b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>'
    assert server_reason(body, "application/xml") == "AccessDenied: Request has expired"


def test_plain_text_error_is_refused_but_binary_with_a_wrong_label_is_not():
    with pytest.raises(errors.NotAModelFile, match="Service temporarily down"):
        check_head(b"Service temporarily down", content_type="text/plain")
    assert check_head(bytes([0, 1, 2, 200, 255]) * 10, content_type="text/plain") is ModelFormat.OTHER


def test_expect_any_and_exact_format():
    assert check_head(b"<html>anything</html>", expect="any") is ModelFormat.OTHER
    with pytest.raises(errors.NotAModelFile, match="gguf"):
        check_head(b"GGUF" + bytes(20), expect="safetensors")


@pytest.mark.parametrize("first", [b"[", b"{", b"<"])
def test_binary_weights_that_happen_to_start_like_text_are_accepted(first):
    """Random bytes start with "[", "{" or "<" in 3 of 256 files: only a body that decodes as text is refused."""
    import random

    head = first + b"]\x18G\xfbI(\x07\x00\x00" + random.Random(1).randbytes(4000)
    assert check_head(head, content_type="application/octet-stream") is ModelFormat.OTHER
    assert check_head(head, content_type="binary/octet-stream", expect="model") is ModelFormat.OTHER


def test_json_cut_mid_character_is_still_text():
    head = '{"error": "Modèle introuvable ééé'.encode()[:-1]
    with pytest.raises(errors.NotAModelFile, match="Modèle introuvable"):
        check_head(head, content_type="application/json")
