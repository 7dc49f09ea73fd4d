"""``login`` checks the token with the service (whoami) and says whose it is, ``logout``, ``whoami``/``status``,
and ``rm MODEL`` (shows what goes, asks; ``--yes``): as a subprocess against the loopback hubs."""

from __future__ import annotations

import json
from pathlib import Path

from hubloader.registry import ModelRegistry
from tests.test_cli import CIVITAI_SECRET, HF_SECRET, LORA, hubloader, json_lines, one_error_line


def test_login_checks_the_token_with_the_service_and_says_whose_it_is(hub_env, isolated_home: Path):
    hub_env.civitai_tokens.add(CIVITAI_SECRET)
    hub_env.valid_hf_tokens.add(HF_SECRET)
    hub_env.token_owners.update({CIVITAI_SECRET: "inkmaster", HF_SECRET: "huggy"})
    settings = isolated_home / "settings.json"

    refused = hubloader("login", "civitai", input="civitai-not-a-real-key\n")
    assert refused.returncode == 4
    assert "refused" in one_error_line(refused) and not settings.exists()
    refused_hf = hubloader("login", "hf", input="hf_notarealtoken000000000000000000\n")
    assert refused_hf.returncode == 4 and "refused" in one_error_line(refused_hf)

    civitai = hubloader("login", "civitai", input=CIVITAI_SECRET + "\n")
    assert civitai.returncode == 0, civitai.stderr
    assert "as inkmaster" in civitai.stdout and CIVITAI_SECRET not in civitai.stdout + civitai.stderr
    hf = hubloader("login", "hf", "--json", input=HF_SECRET + "\n")
    assert hf.returncode == 0, hf.stderr
    assert json_lines(hf.stdout)[0]["user"] == "huggy"
    stored = json.loads(settings.read_text())
    assert stored["civitai_token"] == CIVITAI_SECRET and stored["hf_token"] == HF_SECRET

    status = hubloader("status")
    assert status.returncode == 0, status.stderr
    assert "HuggingFace: logged in as huggy" in status.stdout and "CivitAI: logged in as inkmaster" in status.stdout
    assert str(settings) in status.stdout
    assert hubloader("whoami", "civitai", "-q").stdout == "inkmaster\n"

    out = hubloader("logout", "civitai")
    assert out.returncode == 0 and "Removed the saved CivitAI token" in out.stdout
    assert "civitai_token" not in json.loads(settings.read_text())
    after = hubloader("whoami", "--json")
    records = {r["service"]: r for r in json_lines(after.stdout)}
    assert records["civitai"]["user"] is None and records["civitai"]["token_from"] is None
    assert records["hf"]["user"] == "huggy"


def test_whoami_with_a_revoked_token_says_so_with_exit_4(hub_env):
    hub_env.valid_hf_tokens.add(HF_SECRET)
    result = hubloader("whoami", env={"CIVITAI_API_TOKEN": CIVITAI_SECRET, "HF_TOKEN": HF_SECRET})
    assert result.returncode == 4
    assert "HuggingFace: logged in as fake-user (token from HF_TOKEN)" in result.stdout
    assert "CivitAI: the token from CIVITAI_API_TOKEN does not work" in result.stdout
    assert CIVITAI_SECRET not in result.stdout + result.stderr


def test_rm_shows_what_goes_asks_and_deletes_only_with_yes(hub_env, tmp_path: Path):
    model_id, version_id = hub_env.add_civitai_model(
        "Removable", files=[{"name": "removable.safetensors", "data": LORA}], trained_words=["rem"]
    )
    folder = tmp_path / "m"
    assert hubloader("get", f"civitai:{model_id}", "--models-dir", str(folder)).returncode == 0
    placed = folder / "loras" / "removable.safetensors"
    sidecar = placed.with_suffix(".json")
    assert placed.is_file() and sidecar.is_file()

    asked = hubloader("rm", "Removable")  # stdin is not a terminal: nothing is deleted
    assert asked.returncode == 1
    assert f"delete {placed}" in asked.stdout and f"delete {sidecar}" in asked.stdout
    assert "Nothing was deleted" in asked.stderr and placed.is_file()

    gone = hubloader("rm", f"civitai:{model_id}@{version_id}", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not placed.exists() and not sidecar.exists() and not list(placed.parent.glob("removable.*"))
    with ModelRegistry() as registry:
        assert registry.find_model(f"civitai:{model_id}@{version_id}") is None

    missing = hubloader("rm", "Removable", "--yes")
    assert missing.returncode == 3 and "Removable" in one_error_line(missing)
