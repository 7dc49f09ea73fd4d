"""The command line end to end: ``python -m hubloader …`` as a subprocess against the loopback hubs.

Each test checks what a user (or a script) sees: the exit code, stdout/stderr, the files on disk and the
registry's contents (read back with the real ModelRegistry on the same HUBLOADER_HOME).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from hubloader.core.metadata import ModelMetadata, ModelType, Source
from hubloader.registry import ModelRegistry, registry_state
from tests.fakehub.modelfiles import kohya_lora, kohya_metadata, safetensors_bytes, sd15_checkpoint
from tests.workflow_samples import node, ui_workflow

REPO_ROOT = Path(__file__).resolve().parents[1]
HF_SECRET = "hf_clitestsecretvalue0123456789abcdef"
CIVITAI_SECRET = "civitai-cli-secret-7f3a9c"
MiB = 1024 * 1024


def hubloader(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 90):
    """Run the CLI as a user would; the test's isolated HUBLOADER_HOME/HF_HOME/endpoints come from os.environ."""
    return subprocess.run(
        [sys.executable, "-m", "hubloader", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hubloader", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The error output must be exactly one line, with no traceback and no token in any output."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for secret in (HF_SECRET, CIVITAI_SECRET):
        assert secret not in result.stdout and secret not in result.stderr
    return lines[0]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def comfyui_root(path: Path) -> Path:
    """A minimal ComfyUI checkout as hosts.comfyui_install recognises it."""
    path.mkdir(parents=True)
    (path / "folder_paths.py").write_text("# ComfyUI\n")
    return path


LORA = safetensors_bytes(kohya_lora("sdxl"), kohya_metadata("inkwash", "sdxl"), seed=7)


# --- help, usage, import cost -------------------------------------------------------------------------


def test_help_lists_every_command_and_the_exit_codes():
    result = hubloader("--help")
    assert result.returncode == 0
    for command in (
        "search",
        "get",
        "list",
        "info",
        "rm",
        "scan",
        "resolve",
        "lock",
        "cache",
        "login",
        "logout",
        "whoami",
        "ui",
    ):
        assert f"    {command}" in result.stdout
    assert "130  interrupted" in result.stdout and "4    authentication" in result.stdout


def test_usage_errors_are_one_line_with_exit_code_2():
    result = hubloader("get")
    assert result.returncode == 2
    assert "required: REF" in one_error_line(result)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every (sub)command parser below ``parser``, depth first."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += [sub, *_subparsers(sub)]
    return found


def test_every_command_has_examples_and_every_argument_a_help_text():
    from hubloader.faces.cli import build_parser

    commands = _subparsers(build_parser())
    assert {c.prog.removeprefix("hubloader ") for c in commands} >= {"search", "get", "cache cleanup", "cache pull"}
    for command in commands:
        assert command.epilog and command.epilog.startswith("examples:\n  hubloader "), command.prog
        for action in command._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{command.prog}: {action.dest}"


def test_importing_the_cli_loads_no_service_library():
    code = (
        "import sys, hubloader.faces.cli\n"
        "heavy = [m for m in ('huggingface_hub', 'requests', 'aiohttp', 'sqlite3', 'gradio', 'tqdm') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


# --- search -------------------------------------------------------------------------------------------------


@pytest.mark.hf
def test_search_shows_both_hubs_in_a_table_and_json_lines(hub_env):
    hub_env.add_hf_repo("ink/inkwash-xl", {"inkwash.safetensors": LORA}, tags=["lora", "sdxl"], downloads=321)
    model_id, version_id = hub_env.add_civitai_model("Inkwash Style", stats={"downloadCount": 4321})

    table = hubloader("search", "inkwash")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "SOURCE", "ID", "TYPE", "BASE", "SIZE", "DOWNLOADS", "RATING"]
    assert any("ink/inkwash-xl" in row and " hf " in row and "321" in row for row in rows), table.stdout
    assert any(f"civitai:{model_id}@{version_id}" in row and "4321" in row and "lora" in row for row in rows)

    found = hubloader("search", "inkwash", "--source", "civitai", "--type", "lora", "--base", "sdxl", "--json")
    assert found.returncode == 0, found.stderr
    records = json_lines(found.stdout)
    assert records and all(r["source"] == "civitai" and r["type"] == "lora" for r in records)
    assert f"civitai:{model_id}@{version_id}" in [r["id"] for r in records]


# --- get -------------------------------------------------------------------------------------------------------


def test_a_corrupt_index_is_one_line_and_left_as_it_is(hub_env, tmp_path: Path):
    home = Path(os.environ["HUBLOADER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.db").write_bytes(b"not a database, a user's mistake " * 100)
    result = hubloader("list")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("hubloader: error: The model index ") and "models.db" in line
    assert "file is not a database" in line and "unexpected" not in line
    assert (home / "models.db").read_bytes() == b"not a database, a user's mistake " * 100


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few hundred bytes (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("image", "suffix"),
    [
        (_png_header(20_000, 20_000), "png"),  # 400 megapixels: Pillow's DecompressionBombError on main
        (_png_header(9_000, 9_000), "png"),  # 81 megapixels: under Pillow's limit, over the preview cap
        (  # 900 megapixels, converted to PNG: Pillow's DecompressionBombError aborted the get on main
            b"GIF89a"
            + struct.pack("<HH", 30_000, 30_000)
            + bytes(3)
            + b","
            + struct.pack("<HHHH", 0, 0, 30_000, 30_000)
            + b"\x00\x02\x02\x44\x01\x00;",
            "gif",
        ),
    ],
    ids=["png-400mp", "png-81mp", "gif-900mp"],
)
def test_get_records_the_model_when_its_preview_is_a_bomb(hub_env, tmp_path: Path, image: bytes, suffix: str):
    model_id, version_id = hub_env.add_civitai_model(
        "Bomb Preview",
        files=[{"name": "bombprev.safetensors", "data": LORA}],
        images=[{"url": f"http://images.placeholder/bomb/huge.{suffix}", "type": "image", "width": 9, "height": 9}],
    )
    hub_env.civitai.image_bodies[f"/images/bomb/huge.{suffix}"] = image
    comfy = comfyui_root(tmp_path / "ComfyUI")

    result = hubloader("get", f"civitai:{model_id}", "--comfyui", str(comfy))
    assert result.returncode == 0, result.stderr
    placed = comfy / "models" / "loras" / "bombprev.safetensors"
    assert placed.read_bytes() == LORA
    assert not list(placed.parent.glob("bombprev.preview.*")) and not list(placed.parent.glob("bombprev.png"))
    assert "Preview for bombprev.safetensors not saved" in result.stderr and "Traceback" not in result.stderr
    with ModelRegistry() as registry:
        assert registry.get_model(f"civitai:{model_id}@{version_id}").local_path == placed


def test_get_civitai_into_comfyui_verified_registered_with_sidecars_and_info(hub_env, tmp_path: Path):
    model_id, version_id = hub_env.add_civitai_model(
        "Inkwash Style",
        files=[{"name": "inkwash_v1.safetensors", "data": LORA}],
        trained_words=["inkwash", "sumi-e"],
        settings={"strength": 0.8, "minStrength": 0.5, "maxStrength": 1.0},
    )
    comfy = comfyui_root(tmp_path / "ComfyUI")

    result = hubloader("get", f"civitai:{model_id}", "--comfyui", str(comfy))
    assert result.returncode == 0, result.stderr
    placed = comfy / "models" / "loras" / "inkwash_v1.safetensors"
    assert placed.read_bytes() == LORA
    assert str(placed) in result.stdout and "verified" in result.stdout
    assert not list(placed.parent.glob("*.part"))
    sidecar = json.loads(placed.with_suffix(".json").read_text())
    assert sidecar["activation text"] == "inkwash, sumi-e" and sidecar["preferred weight"] == 0.8
    assert sidecar["sd version"] == "SDXL"
    assert (placed.parent / "inkwash_v1.preview.png").is_file()

    with ModelRegistry() as registry:
        meta = registry.get_model(f"civitai:{model_id}@{version_id}")
    assert meta.local_path == placed and meta.sha256 == sha(LORA)
    assert registry_state(meta)["managed"] is True

    # A second get transfers nothing and still exits 0.
    sent = hub_env.bytes_sent.total()
    again = hubloader("get", f"civitai:{model_id}", "--comfyui", str(comfy), "--json")
    assert again.returncode == 0, again.stderr
    (record,) = json_lines(again.stdout)
    assert record["reused"] is True and record["sha256"] == sha(LORA) and record["path"] == str(placed)
    assert hub_env.bytes_sent.total() == sent

    info = hubloader("info", "Inkwash Style")
    assert info.returncode == 0, info.stderr
    fields = dict(line.split(":", 1) for line in info.stdout.splitlines())
    assert fields["Trigger words"].strip() == "inkwash, sumi-e (from civitai)"
    assert fields["Weight"].strip().startswith("0.8") and "(from civitai.settings)" in fields["Weight"]
    assert fields["SHA256"].strip() == sha(LORA)
    assert fields["Local path"].strip() == str(placed)


@pytest.mark.hf
def test_get_huggingface_file_into_a1111_and_by_url_into_a_folder(hub_env, tmp_path: Path):
    checkpoint = safetensors_bytes(sd15_checkpoint(), seed=3)
    hub_env.add_hf_repo("ink/inkwash-xl", {"README.md": b"# ink\n", "inkwash.safetensors": LORA}, tags=["lora"])
    hub_env.add_hf_repo("ink/sd15-base", {"v1-5.safetensors": checkpoint}, tags=["stable-diffusion"])
    a1111 = tmp_path / "webui"

    result = hubloader("get", "ink/inkwash-xl", "--a1111", str(a1111))
    assert result.returncode == 0, result.stderr
    placed = a1111 / "models" / "Lora" / "inkwash.safetensors"
    assert placed.read_bytes() == LORA
    assert (a1111 / "models" / "Lora" / "inkwash.json").is_file()

    url = f"{hub_env.hf_url}/ink/sd15-base/blob/main/v1-5.safetensors"
    by_url = hubloader("get", url, "--to", str(tmp_path / "flat"), "--json")
    assert by_url.returncode == 0, by_url.stderr
    (record,) = json_lines(by_url.stdout)
    assert record["type"] == "checkpoint" and record["verified"] is True
    assert (tmp_path / "flat" / "v1-5.safetensors").read_bytes() == checkpoint

    with ModelRegistry() as registry:
        models = {m.model_id: m for m in registry.list_models(source=Source.HUGGINGFACE)}
    assert models["ink/inkwash-xl/inkwash.safetensors"].local_path == placed
    assert models["ink/sd15-base/v1-5.safetensors"].sha256 == sha(checkpoint)


@pytest.mark.hf
def test_get_places_same_named_different_files_apart_and_prints_where(hub_env, tmp_path: Path):
    first, second, third = (safetensors_bytes(kohya_lora(), seed=s) for s in (61, 62, 63))
    hub_env.add_hf_repo("ink/one", {"model.safetensors": first}, tags=["lora"])
    hub_env.add_hf_repo("pen/two", {"model.safetensors": second}, tags=["lora"])
    model_id, version_id = hub_env.add_civitai_model("Three", files=[{"name": "model.safetensors", "data": third}])
    comfy = comfyui_root(tmp_path / "ComfyUI")
    loras = comfy / "models" / "loras"

    assert hubloader("get", "ink/one/model.safetensors", "--comfyui", str(comfy)).returncode == 0
    result = hubloader("get", "pen/two/model.safetensors", "--comfyui", str(comfy))
    assert result.returncode == 0, result.stderr
    apart = loras / "pen__two" / "model.safetensors"
    assert f"Saved: {apart} " in result.stdout and apart.read_bytes() == second
    civitai = hubloader("get", f"civitai:{model_id}", "--comfyui", str(comfy), "--json")
    assert civitai.returncode == 0, civitai.stderr
    (record,) = json_lines(civitai.stdout)
    assert record["path"] == str(loras / f"model-{version_id}.safetensors") and record["sha256"] == sha(third)
    assert (loras / "model.safetensors").read_bytes() == first

    with ModelRegistry() as registry:
        models = {m.model_id: m for m in registry.list_models()}
    assert models["pen/two/model.safetensors"].local_path == apart


def test_get_by_hash_finds_the_file_on_civitai(hub_env, tmp_path: Path):
    embedding = safetensors_bytes(kohya_lora("sd15"), seed=9)
    hub_env.add_civitai_model(
        "Hash Found",
        type="TextualInversion",
        base_model="SD 1.5",
        files=[{"name": "hashy.safetensors", "data": embedding}],
    )
    result = hubloader("get", sha(embedding).upper(), "--models-dir", str(tmp_path / "models"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models" / "embeddings" / "hashy.safetensors").read_bytes() == embedding


@pytest.mark.slow
def test_ctrl_c_during_get_keeps_the_part_and_a_rerun_resumes(hub_env, tmp_path: Path):
    size = 24 * MiB  # one connection (below the engine's parallel threshold): bytes sent = bytes needed
    model_id, _ = hub_env.add_civitai_model(
        "Big Model", files=[{"name": "big.safetensors", "data": ("generated", size)}]
    )
    hub_env.faults.bandwidth_total = 4 * MiB  # slow enough to interrupt mid-transfer
    target = tmp_path / "models"
    proc = start("get", f"civitai:{model_id}", "--models-dir", str(target))
    deadline = time.monotonic() + 60
    while hub_env.bytes_sent.total() < 8 * MiB:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the download never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    interrupted = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert proc.returncode == 130
    assert "interrupted" in one_error_line(interrupted) and "resume" in interrupted.stderr
    folder = target / "loras"
    assert not (folder / "big.safetensors").exists()
    assert (folder / "big.safetensors.part").is_file() and (folder / "big.safetensors.part.json").is_file()
    first = hub_env.bytes_sent.total()

    kept = json.loads((folder / "big.safetensors.part.json").read_text())["done"]
    assert kept and kept[0][0] == 0 and kept[0][1] >= 2 * MiB

    hub_env.faults.bandwidth_total = None
    hub_env.requests.clear()
    result = hubloader("get", f"civitai:{model_id}", "--models-dir", str(target))
    assert result.returncode == 0, result.stderr
    ranges = [r.headers.get("Range", "") for r in hub_env.requests if r.path.startswith("/storage/")]
    assert ranges and ranges[0] == f"bytes={kept[0][1]}-{size - 1}", ranges
    resent = hub_env.bytes_sent.total() - first
    assert resent <= size - kept[0][1], (resent, kept)
    assert (folder / "big.safetensors").stat().st_size == size
    assert not (folder / "big.safetensors.part").exists()


# --- bad input: one line, a documented exit code, never a token ------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.hf
def test_bad_input_gives_one_clear_line_and_its_exit_code(hub_env, tmp_path: Path):
    hub_env.valid_hf_tokens.add(HF_SECRET)
    hub_env.civitai_tokens.add(CIVITAI_SECRET)
    hub_env.add_hf_repo("corp/gated-model", {"model.safetensors": LORA}, gated=True)
    login_model, _ = hub_env.add_civitai_model("Members Only", login_required=True)
    tokens = {"HF_TOKEN": HF_SECRET, "CIVITAI_API_TOKEN": CIVITAI_SECRET}
    folder = ["--models-dir", str(tmp_path / "models")]

    unknown = hubloader("get", "civitai:424242", *folder, env=tokens)
    assert unknown.returncode == 3
    assert "424242" in one_error_line(unknown)

    malformed = hubloader("get", "not a reference!", *folder, env=tokens)
    assert malformed.returncode == 2
    assert "owner/repo" in one_error_line(malformed)

    gated = hubloader("get", "corp/gated-model/model.safetensors", *folder, env=tokens)
    assert gated.returncode == 4
    assert "gated" in one_error_line(gated) and "accept" in gated.stderr

    no_token = hubloader("get", f"civitai:{login_model}", *folder, env={"HF_TOKEN": HF_SECRET})
    assert no_token.returncode == 4
    assert "CIVITAI_API_TOKEN" in one_error_line(no_token) or "login" in no_token.stderr

    unreachable = hubloader(
        "get",
        "ink/anything/model.safetensors",
        *folder,
        env={**tokens, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"},
    )
    assert unreachable.returncode == 6
    assert "reach" in one_error_line(unreachable)
    assert not list((tmp_path / "models").rglob("*.safetensors"))

    verbose = hubloader("--verbose", "get", "civitai:424242", *folder, env=tokens)
    assert verbose.returncode == 3 and "Traceback" in verbose.stderr
    assert HF_SECRET not in verbose.stderr and CIVITAI_SECRET not in verbose.stderr


# --- library: scan, list, info --------------------------------------------------------------------------------


def test_scan_then_list_and_missing_files(tmp_path: Path):
    library = tmp_path / "library"
    (library / "loras").mkdir(parents=True)
    (library / "checkpoints").mkdir()
    lora = library / "loras" / "inkwash.safetensors"
    lora.write_bytes(LORA)
    (library / "checkpoints" / "base.safetensors").write_bytes(safetensors_bytes(sd15_checkpoint(), seed=5))

    scanned = hubloader("scan", str(library), "--json")
    assert scanned.returncode == 0, scanned.stderr
    (report,) = json_lines(scanned.stdout)
    assert sorted(Path(p).name for p in report["new_or_changed"]) == ["base.safetensors", "inkwash.safetensors"]

    lora.unlink()
    listed = hubloader("list", "--missing", "--json")
    assert listed.returncode == 0, listed.stderr
    (missing,) = json_lines(listed.stdout)
    assert missing["name"] == "inkwash" and missing["status"] == "missing" and missing["type"] == "lora"

    with ModelRegistry() as registry:
        assert registry.get_model("base").type is ModelType.BASE_MODEL


def test_info_of_an_unknown_name_is_not_found(tmp_path: Path):
    result = hubloader("info", "no such model")
    assert result.returncode == 3
    assert "hubloader list" in one_error_line(result)


# --- workflows: resolve, lock ---------------------------------------------------------------------------------


@pytest.mark.hf
def test_resolve_download_lock_and_resolve_the_lockfile_elsewhere(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("ink/inkwash-xl", {"inkwash.safetensors": LORA}, tags=["lora"])
    url = "https://huggingface.co/ink/inkwash-xl/resolve/main/inkwash.safetensors"
    workflow = tmp_path / "wf.json"
    workflow.write_text(
        json.dumps(
            ui_workflow(
                [node(1, "LoraLoader", ["inkwash.safetensors", 1.0, 1.0])],
                models=[{"name": "inkwash.safetensors", "url": url, "directory": "loras"}],
            )
        )
    )
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"

    planned = hubloader("resolve", str(workflow), "--models-dir", str(machine_a))
    assert planned.returncode == 0, planned.stderr
    row = next(line for line in planned.stdout.splitlines() if "inkwash.safetensors" in line)
    assert row.split()[:2] == ["resolved", "loras"] and "--download" in planned.stdout

    fetched = hubloader("resolve", str(workflow), "--download", "--models-dir", str(machine_a), "--json")
    assert fetched.returncode == 0, fetched.stderr
    (report,) = json_lines(fetched.stdout)
    assert report["counts"]["fetched"] == 1
    assert (machine_a / "loras" / "inkwash.safetensors").read_bytes() == LORA

    locked = hubloader("lock", str(workflow), "--models-dir", str(machine_a))
    assert locked.returncode == 0, locked.stderr
    lockfile = tmp_path / "wf.lock.json"
    (entry,) = json.loads(lockfile.read_text())["models"]
    assert entry["sha256"] == sha(LORA) and entry["kind"] == "loras"
    assert entry["url"].startswith("https://huggingface.co/")  # public host, rewritten on resolve

    elsewhere = hubloader("resolve", str(lockfile), "--download", "--models-dir", str(machine_b))
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (machine_b / "loras" / "inkwash.safetensors").read_bytes() == LORA
    assert "fetched" in elsewhere.stdout


@pytest.mark.hf
def test_lock_names_the_huggingface_source_the_registry_knows_for_a_downloaded_checkpoint(hub_env, tmp_path: Path):
    checkpoint = safetensors_bytes(sd15_checkpoint(), seed=11)
    commit = hub_env.add_hf_repo("ink/sd15-base", {"v1-5.safetensors": checkpoint}, tags=["stable-diffusion"])
    models = tmp_path / "models"
    fetched = hubloader("get", "ink/sd15-base/v1-5.safetensors", "--models-dir", str(models))
    assert fetched.returncode == 0, fetched.stderr
    workflow = tmp_path / "wf.json"  # names the file only: no URL, no hash
    workflow.write_text(json.dumps(ui_workflow([node(1, "CheckpointLoaderSimple", ["v1-5.safetensors"])])))

    locked = hubloader("lock", str(workflow), "--models-dir", str(models))
    assert locked.returncode == 0, locked.stderr
    (entry,) = json.loads((tmp_path / "wf.lock.json").read_text())["models"]
    assert entry["sha256"] == sha(checkpoint) and entry["kind"] == "checkpoints"
    assert entry["url"] == f"https://huggingface.co/ink/sd15-base/resolve/{commit}/v1-5.safetensors"


@pytest.mark.hf
def test_resolve_reports_unresolvable_models_with_exit_code_3(hub_env, tmp_path: Path):
    workflow = tmp_path / "wf.json"
    workflow.write_text(
        json.dumps({"1": {"class_type": "VAELoader", "inputs": {"vae_name": "nowhere_vae.safetensors"}}})
    )
    result = hubloader("resolve", str(workflow), "--models-dir", str(tmp_path / "models"))
    assert result.returncode == 3
    assert "nowhere_vae.safetensors" in one_error_line(result)
    assert result.stdout.splitlines()[1].split()[:2] == ["unresolved", "vae"]


# --- cache, login, ui -------------------------------------------------------------------------------------------


def test_cache_limit_deletes_nothing_and_cleanup_lists_then_deletes_only_when_confirmed(tmp_path: Path):
    folder = tmp_path / "models" / "loras"
    folder.mkdir(parents=True)
    users_own = folder / "mine.safetensors"
    users_own.write_bytes(LORA)
    with ModelRegistry() as registry:
        registry.register_model(
            ModelMetadata(model_id="mine", name="mine", source=Source.LOCAL, local_path=users_own, type=ModelType.LORA)
        )
        for name in ("old", "new"):
            path = folder / f"{name}.safetensors"
            path.write_bytes(LORA)
            meta = ModelMetadata(model_id=f"civitai:1@{len(name)}{name}", name=name, source=Source.CIVITAI)
            meta.local_path, meta.type = path, ModelType.LORA
            registry.mark_used(registry.register_model(meta, managed=True))
            time.sleep(0.01)
    downloads = [folder / "old.safetensors", folder / "new.safetensors"]

    dry = hubloader("cache", "cleanup", "--keep-recent", "1", "--max-size-gb", "0", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    (report,) = json_lines(dry.stdout)
    assert report["dry_run"] is True and [Path(d["path"]).name for d in report["deleted"]] == ["old.safetensors"]
    assert (folder / "old.safetensors").is_file()

    limited = hubloader("cache", "--limit", "0")
    assert limited.returncode == 0, limited.stderr
    assert "Cache limit set to 0 GB; nothing was deleted." in limited.stdout
    assert "over it: `hubloader cache cleanup`" in limited.stdout
    assert all(p.is_file() for p in downloads)

    # Not a terminal and no --yes: it lists, deletes nothing and says so (a piped "y" is no confirmation).
    asked = hubloader("cache", "cleanup", input="y\n")
    assert asked.returncode == 1
    assert "would delete old" in asked.stdout and "Nothing was deleted" in asked.stderr
    assert all(p.is_file() for p in downloads)

    done = hubloader("cache", "cleanup", "--yes")  # down to the limit, 0 GB
    assert done.returncode == 0, done.stderr
    assert "Deleted 2 model(s)" in done.stdout
    assert not any(p.exists() for p in downloads) and users_own.read_bytes() == LORA  # the user's file stays


def test_login_stores_the_token_privately_and_never_prints_it(hub_env, isolated_home: Path):
    hub_env.civitai_tokens.add(CIVITAI_SECRET)  # login checks the token with CivitAI first
    result = hubloader("login", "civitai", input=CIVITAI_SECRET + "\n")
    assert result.returncode == 0, result.stderr
    assert CIVITAI_SECRET not in result.stdout + result.stderr
    settings = isolated_home / "settings.json"
    assert json.loads(settings.read_text())["civitai_token"] == CIVITAI_SECRET
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600

    empty = hubloader("login", "hf", input="\n")
    assert empty.returncode == 2
    assert "No HuggingFace token" in one_error_line(empty)


def test_ui_without_gradio_says_how_to_install_it():
    code = "import sys; sys.modules['gradio'] = None; from hubloader.faces.cli import main; sys.exit(main(['ui']))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "pip install 'hubloader[ui]'" in one_error_line(result)
