"""``hubloader get``'s conventions (as ``hf download`` and ``comfy model download`` have them), as a subprocess
against the loopback hubs: -q prints only the path, --filename, --token, --include/--exclude, --force, --dry-run,
the weight beside the trigger words, absolute JSON paths, and plain progress lines when not on a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes
from tests.test_cli import CIVITAI_SECRET, LORA, REPO_ROOT, hubloader, json_lines, one_error_line, sha

OTHER = safetensors_bytes(kohya_lora("sdxl"), seed=71)


def test_quiet_get_prints_only_the_saved_path_and_search_only_ids(hub_env, tmp_path: Path):
    model_id, version_id = hub_env.add_civitai_model(
        "Quiet Ink", files=[{"name": "quietink.safetensors", "data": LORA}]
    )
    folder = tmp_path / "models"

    got = hubloader("get", f"civitai:{model_id}", "--models-dir", str(folder), "-q")
    assert got.returncode == 0, got.stderr
    placed = folder / "loras" / "quietink.safetensors"
    assert got.stdout == f"{placed}\n" and placed.read_bytes() == LORA
    assert got.stderr == ""  # no bar, no plain progress line with -q

    again = hubloader("-q", "get", f"civitai:{model_id}", "--models-dir", str(folder))  # -q before the command too
    assert again.returncode == 0 and again.stdout == f"{placed}\n"

    found = hubloader("search", "Quiet Ink", "--source", "civitai", "-q")
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines() == [f"civitai:{model_id}@{version_id}"]


def test_get_prints_the_weight_beside_the_trigger_words_and_json_paths_are_absolute(hub_env, tmp_path: Path):
    model_id, _ = hub_env.add_civitai_model(
        "Weighted Ink",
        files=[{"name": "weighted.safetensors", "data": LORA}],
        trained_words=["inkwash"],
        settings={"strength": 0.7},
    )
    result = hubloader("get", f"civitai:{model_id}", "--models-dir", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "trigger words" in x]
    assert "inkwash" in line and "weight: 0.7" in line

    # A relative --to: the JSON path is still absolute (a script may run from another folder).
    relative = subprocess.run(
        [sys.executable, "-m", "hubloader", "get", f"civitai:{model_id}", "--to", "relative-loras", "--json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert relative.returncode == 0, relative.stderr
    (record,) = json_lines(relative.stdout)
    assert Path(record["path"]).is_absolute() and record["path"] == str(
        tmp_path / "relative-loras" / "weighted.safetensors"
    )
    assert record["recommended_weight"] == 0.7


def test_filename_saves_under_another_name_beside_a_different_file(hub_env, tmp_path: Path):
    model_id, _ = hub_env.add_civitai_model("Named", files=[{"name": "named.safetensors", "data": LORA}])
    loras = tmp_path / "m" / "loras"
    loras.mkdir(parents=True)
    (loras / "named.safetensors").write_bytes(OTHER)  # the user's own, different file

    result = hubloader(
        "get", f"civitai:{model_id}", "--models-dir", str(tmp_path / "m"), "--filename", "named_v2.safetensors", "-q"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(loras / "named_v2.safetensors")
    assert (loras / "named_v2.safetensors").read_bytes() == LORA
    assert (loras / "named.safetensors").read_bytes() == OTHER  # never replaced without --force


def test_force_downloads_again_and_replaces_only_when_asked(hub_env, tmp_path: Path):
    model_id, _ = hub_env.add_civitai_model("Forced", files=[{"name": "forced.safetensors", "data": LORA}])
    folder = ["--models-dir", str(tmp_path / "m")]
    placed = tmp_path / "m" / "loras" / "forced.safetensors"
    assert hubloader("get", f"civitai:{model_id}", *folder).returncode == 0

    sent = hub_env.bytes_sent.total()
    same = hubloader("get", f"civitai:{model_id}", *folder)
    assert same.returncode == 0 and hub_env.bytes_sent.total() == sent  # present: nothing fetched

    forced = hubloader("get", f"civitai:{model_id}", *folder, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    (record,) = json_lines(forced.stdout)
    assert record["path"] == str(placed) and record["reused"] is False
    assert hub_env.bytes_sent.total() - sent == len(LORA)  # fetched again
    assert placed.read_bytes() == LORA and not list(placed.parent.glob(".*replaced"))

    placed.write_bytes(OTHER)  # a different file under the name: replaced only with --force
    kept = hubloader("get", f"civitai:{model_id}", *folder, "--json")
    assert kept.returncode == 0 and placed.read_bytes() == OTHER
    assert json_lines(kept.stdout)[0]["path"] != str(placed)
    assert hubloader("get", f"civitai:{model_id}", *folder, "--force").returncode == 0
    assert placed.read_bytes() == LORA


def test_force_keeps_the_old_file_when_the_new_download_fails(hub_env, tmp_path: Path):
    model_id, _ = hub_env.add_civitai_model("Fragile", files=[{"name": "fragile.safetensors", "data": LORA}])
    placed = tmp_path / "m" / "loras" / "fragile.safetensors"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(OTHER)
    hub_env.faults.wrong_bytes = 100  # the new bytes do not match CivitAI's SHA256
    result = hubloader("get", f"civitai:{model_id}", "--models-dir", str(tmp_path / "m"), "--force")
    assert result.returncode == 5, result.stderr
    assert placed.read_bytes() == OTHER and not list(placed.parent.glob(".*replaced"))


def test_dry_run_says_what_where_and_how_big_and_fetches_nothing(hub_env, tmp_path: Path):
    hub_env.add_hf_repo(
        "ink/multi",
        {"README.md": b"# multi\n", "a.safetensors": LORA, "b.safetensors": OTHER, "b-fp32.safetensors": OTHER},
        tags=["lora"],
    )
    folder = tmp_path / "m"
    sent = hub_env.bytes_sent.total()
    table = hubloader(
        "get",
        "ink/multi",
        "--include",
        "*.safetensors",
        "--exclude",
        "*fp32*",
        "--models-dir",
        str(folder),
        "--dry-run",
    )
    assert table.returncode == 0, table.stderr
    assert "a.safetensors" in table.stdout and "b.safetensors" in table.stdout and "fp32" not in table.stdout
    assert str(folder / "loras" / "a.safetensors") in table.stdout and "Dry run" in table.stdout
    records = json_lines(
        hubloader("get", "ink/multi/a.safetensors", "--models-dir", str(folder), "--dry-run", "--json").stdout
    )
    assert records == [
        {
            "name": "a.safetensors",
            "path": str(folder / "loras" / "a.safetensors"),
            "size_bytes": len(LORA),
            "sha256": sha(LORA),
            "action": "download",
            "dry_run": True,
        }
    ]
    assert hub_env.bytes_sent.total() == sent and not folder.exists()


@pytest.mark.hf
def test_include_exclude_fetch_the_matching_files_of_a_repo_with_a_line_each_off_terminal(hub_env, tmp_path: Path):
    hub_env.add_hf_repo(
        "ink/multi",
        {"README.md": b"# multi\n", "a.safetensors": LORA, "b.safetensors": OTHER, "c.bin": b"x" * 10},
        tags=["lora"],
    )
    folder = tmp_path / "m"
    result = hubloader("get", "ink/multi", "--include", "*.safetensors", "--models-dir", str(folder))
    assert result.returncode == 0, result.stderr
    assert (folder / "loras" / "a.safetensors").read_bytes() == LORA
    assert (folder / "loras" / "b.safetensors").read_bytes() == OTHER
    assert not (folder / "loras" / "c.bin").exists() and not (folder / "loras" / "README.md").exists()
    # stderr is a pipe here (as in CI or Docker): one plain line per file, no carriage-return bar
    assert "\r" not in result.stderr
    assert "[1/2] downloaded a.safetensors" in result.stderr and "[2/2] downloaded b.safetensors" in result.stderr
    assert result.stdout.count("Saved: ") == 2

    none = hubloader("get", "ink/multi", "--include", "*.gguf", "--models-dir", str(folder))
    assert none.returncode == 3 and "*.gguf" in one_error_line(none)


def test_token_is_used_for_this_download_only(hub_env, tmp_path: Path, isolated_home: Path):
    hub_env.civitai_tokens.add(CIVITAI_SECRET)
    model_id, _ = hub_env.add_civitai_model(
        "Members", login_required=True, files=[{"name": "members.safetensors", "data": LORA}]
    )
    folder = ["--models-dir", str(tmp_path / "m")]
    assert hubloader("get", f"civitai:{model_id}", *folder).returncode == 4
    result = hubloader("get", f"civitai:{model_id}", *folder, "--token", CIVITAI_SECRET)
    assert result.returncode == 0, result.stderr
    assert CIVITAI_SECRET not in result.stdout + result.stderr
    assert (tmp_path / "m" / "loras" / "members.safetensors").read_bytes() == LORA
    settings = isolated_home / "settings.json"
    assert not settings.exists() or CIVITAI_SECRET not in settings.read_text()  # not saved


@pytest.mark.hf
def test_sidecar_notes_link_to_the_model_pages(hub_env, tmp_path: Path):
    commit = hub_env.add_hf_repo("ink/paged", {"loras/paged.safetensors": LORA}, tags=["lora"])
    model_id, version_id = hub_env.add_civitai_model("Paged", files=[{"name": "cpaged.safetensors", "data": OTHER}])
    folder = tmp_path / "m"
    assert hubloader("get", "ink/paged/loras/paged.safetensors", "--models-dir", str(folder)).returncode == 0
    assert hubloader("get", f"civitai:{model_id}", "--models-dir", str(folder)).returncode == 0
    hf_notes = json.loads((folder / "loras" / "paged.json").read_text())["notes"]
    assert hf_notes == f"{hub_env.hf_url}/ink/paged/blob/{commit}/loras/paged.safetensors"
    civitai_notes = json.loads((folder / "loras" / "cpaged.json").read_text())["notes"]
    assert civitai_notes == f"{hub_env.civitai_url}/models/{model_id}?modelVersionId={version_id}"


@pytest.mark.hf
def test_force_downloads_a_huggingface_file_again_not_only_its_cached_copy(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("ink/forced", {"forced.safetensors": LORA}, tags=["lora"])
    folder = ["--models-dir", str(tmp_path / "m")]
    placed = tmp_path / "m" / "loras" / "forced.safetensors"
    assert hubloader("get", "ink/forced/forced.safetensors", *folder).returncode == 0
    sent = hub_env.bytes_sent.total()
    forced = hubloader("get", "ink/forced/forced.safetensors", *folder, "--force", "-q")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == str(placed) and placed.read_bytes() == LORA
    assert hub_env.bytes_sent.total() - sent == len(LORA)  # fetched from the Hub again


def test_filename_taken_by_a_different_file_is_refused_unless_forced(hub_env, tmp_path: Path):
    model_id, _ = hub_env.add_civitai_model("Taken", files=[{"name": "taken.safetensors", "data": LORA}])
    loras = tmp_path / "m" / "loras"
    loras.mkdir(parents=True)
    mine = loras / "mine.safetensors"
    mine.write_bytes(OTHER)
    folder = ["--models-dir", str(tmp_path / "m")]

    refused = hubloader("get", f"civitai:{model_id}", *folder, "--filename", "mine.safetensors")
    assert refused.returncode == 5  # main saved it as taken.safetensors instead, without a word
    assert "--force" in one_error_line(refused) and str(mine) in refused.stderr
    assert mine.read_bytes() == OTHER and not (loras / "taken.safetensors").exists()

    forced = hubloader("get", f"civitai:{model_id}", *folder, "--filename", "mine.safetensors", "--force", "-q")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == str(mine) and mine.read_bytes() == LORA
