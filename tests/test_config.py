from __future__ import annotations

import json
import os
import stat

import pytest

from hubloader.core import settings as config
from hubloader.core.errors import ConfigError, GatedModel
from hubloader.faces.advice import CLI, explain


def test_tokens_from_environment_and_never_shown(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz123456")
    monkeypatch.setenv("CIVITAI_API_KEY", "civ-secret-value")
    hf, civ = config.hf_token(), config.civitai_token()
    assert hf.reveal() == "hf_abcdefghijklmnopqrstuvwxyz123456"
    assert civ.reveal() == "civ-secret-value"
    for shown in (repr(hf), str(hf), repr([hf, civ]), f"{civ}"):
        assert "abcdefgh" not in shown and "secret" not in shown


def test_civitai_api_token_wins_over_key(monkeypatch):
    monkeypatch.setenv("CIVITAI_API_TOKEN", "first")
    monkeypatch.setenv("CIVITAI_API_KEY", "second")
    assert config.civitai_token().reveal() == "first"


def test_hf_token_falls_back_to_huggingface_hub_login(tmp_path, monkeypatch):
    token_file = tmp_path / "hf-home" / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("hf_stored_login_token\n")
    assert config.hf_token().reveal() == "hf_stored_login_token"


def test_settings_file_is_private_and_merges(isolated_home):
    path = config.save_settings({"civitai_token": "tok", "cache_limit_gb": 20})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    config.save_settings({"allow_pickle": True})
    settings = config.load_settings()
    assert settings["civitai_token"] == "tok" and settings["cache_limit_gb"] == 20 and settings["allow_pickle"] is True
    assert config.civitai_token().reveal() == "tok"
    shown = config.public_settings()
    assert shown["civitai_token"] == "set" and shown["hf_token"] == "not set"
    config.save_settings({"civitai_token": None})
    assert config.civitai_token() is None


def test_unknown_setting_is_refused():
    with pytest.raises(ConfigError, match="Unknown setting"):
        config.save_settings({"civitai_tokn": "x"})


def test_broken_settings_file_means_defaults(isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "settings.json").write_text("{not json")
    assert config.load_settings() == config.DEFAULTS


def test_wrong_typed_settings_fall_back_to_defaults_with_one_warning(isolated_home, caplog):
    """``"allow_pickle": "false"`` must not read as true (a non-empty string), nor "eight" as a connection count."""
    config.settings_path().parent.mkdir(parents=True, exist_ok=True)
    stored = {"allow_pickle": "false", "max_connections": "eight", "nsfw": 1, "hf_token": 5, "cache_limit_gb": 2.5}
    config.settings_path().write_text(json.dumps(stored))
    with caplog.at_level("WARNING", logger="hubloader.core.settings"):
        first, again = config.load_settings(), config.load_settings()
    assert first == again
    assert (
        first["allow_pickle"] is False
        and first["max_connections"] == config.DEFAULTS["max_connections"]
        and first["nsfw"] is False
    )
    assert first["hf_token"] is None and first["cache_limit_gb"] == 2.5
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 4 and all("\n" not in w and str(config.settings_path()) in w for w in warned)
    assert any('sets max_connections to "eight"; it must be a number' in w for w in warned)
    assert any("sets hf_token to a hidden value" in w for w in warned) and not any("5;" in w for w in warned)
    assert json.loads(config.settings_path().read_text()) == stored  # the file is left as it is


def test_endpoints_read_at_call_time(monkeypatch):
    assert config.hf_endpoint() == "https://huggingface.co"
    assert config.civitai_endpoint() == "https://civitai.com"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("CIVITAI_ENDPOINT", "http://127.0.0.1:10")
    assert config.hf_endpoint() == "http://127.0.0.1:9"
    assert config.civitai_endpoint() == "http://127.0.0.1:10"


def test_redact_url_hides_tokens_and_signatures():
    url = "https://u:p@host/api/download/models/1?token=abc123&type=Model&X-Amz-Signature=deadbeef"
    shown = config.redact_url(url)
    assert "abc123" not in shown and "deadbeef" not in shown and "u:p" not in shown
    assert "type=Model" in shown


def test_redact_text():
    assert config.redact_text("failed with hf_AAAAAAAAAAAAAAAAAAAAAAAAAA") == "failed with hf_***"
    assert config.redact_text("key=s3cr3t", config.Secret("s3cr3t")) == "key=***"


def test_gated_error_tells_what_to_do():
    error = GatedModel("org/gated", endpoint="http://hub")
    assert "org/gated" in str(error) and "accept" in str(error) and error.service == "huggingface"
    assert "HF_TOKEN" in explain(error, CLI)  # the command line says what to do


@pytest.mark.parametrize("content", ['{"civitai_token": "kept-tok', "[1, 2]"], ids=["truncated", "not-an-object"])
def test_a_save_never_overwrites_a_settings_file_it_cannot_read(isolated_home, content):
    """A truncated or hand-broken settings file still holds the user's tokens: a save stops instead of dropping them."""
    path = config.settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        config.save_settings({"nsfw": True})
    assert str(path) in str(caught.value) and "nothing was saved" in str(caught.value)
    assert "kept-tok" not in str(caught.value)  # never echo what the file holds
    assert path.read_text() == content


def test_settings_save_works_without_os_fchmod(isolated_home, monkeypatch):
    """Windows Pythons before 3.13 have no os.fchmod: saving must not depend on it."""
    monkeypatch.delattr(os, "fchmod", raising=False)
    config.save_settings({"nsfw": True})
    assert config.load_settings()["nsfw"] is True
