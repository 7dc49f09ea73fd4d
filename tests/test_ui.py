"""The Model Hub Gradio app: the Blocks build, and its handlers drive the hub layer against the loopback hubs."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from hubloader.core import settings as config  # noqa: E402
from hubloader.core.errors import ConfigError  # noqa: E402
from hubloader.core.folders import a1111_install, standalone_folders  # noqa: E402
from hubloader.core.metadata import ModelType, Source  # noqa: E402
from hubloader.faces import app as ui  # noqa: E402
from hubloader.faces import cards  # noqa: E402
from hubloader.faces.jobs import DONE  # noqa: E402
from tests.fakehub import modelfiles as mf  # noqa: E402


@pytest.fixture
def hub(tmp_path: Path):
    hub = ui.ModelHub(standalone_folders(tmp_path / "models"))
    yield hub
    hub.jobs.shutdown()


def handler(blocks, name: str):
    """A wired event handler as gradio holds it (a list in 3.41, a dict since 4)."""
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns
    return next(fn.fn for fn in fns if getattr(fn.fn, "__name__", "") == name)


def _finished(hub: ui.ModelHub, job: dict) -> object:
    done = hub.jobs.wait(job["id"], timeout=60)
    assert done.state == DONE, done.error
    return done


def test_blocks_build_with_every_tab(hub):
    blocks = ui.build_blocks(hub)
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    for elem_id in (
        "hubloader_query",
        "hubloader_results",
        "hubloader_download",
        "hubloader_jobs",
        "hubloader_library",
    ):
        assert elem_id in ids
    assert {"hubloader_infotext", "hubloader_hf_token", "hubloader_cleanup_preview"} <= ids
    assert blocks.hubloader_hub is hub
    token_box = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "hubloader_hf_token")
    assert token_box.type == "password" and not token_box.value


def test_search_both_sources_filters_and_cards(hub, hub_env):
    hub_env.add_civitai_model("Ink Style", trained_words=["inkstyle"], stats={"downloadCount": 900})
    hub_env.add_civitai_model("Ink Checkpoint", type="Checkpoint")
    hub_env.add_hf_repo(
        "someone/ink-lora",
        files={"ink.safetensors": mf.safetensors_bytes(mf.kohya_lora("sdxl"), seed=3)},
        tags=["lora", "base_model:stabilityai/stable-diffusion-xl-base-1.0"],
    )
    results, warnings = hub.search("ink", "Both", "lora")
    assert warnings == []
    by_source = {(m.source, m.name) for m in results}
    assert (Source.CIVITAI, "Ink Style") in by_source and (Source.HUGGINGFACE, "ink-lora") in by_source
    assert all(m.type in (ModelType.LORA, ModelType.LYCORIS) for m in results)

    ink = next(m for m in results if m.name == "Ink Style")
    civitai_card = cards.card(ink, 0)
    # The preview served by the CDN, asked at thumbnail width, for the browser to load (lazily).
    assert f'src="{cards.thumbnail_url(ink.preview_urls[0])}" loading="lazy"' in civitai_card
    assert ink.preview_urls[0].startswith(hub_env.url()) and "/width=450/" in cards.thumbnail_url(ink.preview_urls[0])
    assert ">CivitAI<" in civitai_card and "triggers: inkstyle" in civitai_card
    assert "lora · sdxl · " in civitai_card and "⬇ 900" in civitai_card
    hf_card = cards.card(next(m for m in results if m.source is Source.HUGGINGFACE), 1)
    assert ">HF<" in hf_card and "ink-lora" in hf_card and 'data-v="1"' in hf_card
    page = cards.results_html(results)
    assert page.count('class="hl-card"') == len(results)

    only_hf, _ = hub.search("ink", "HuggingFace")
    assert {m.source for m in only_hf} == {Source.HUGGINGFACE}


def test_a_failing_source_is_a_warning_while_the_other_answers(hub, hub_env):
    hub_env.add_civitai_model("Ink Style")
    hub_env.faults.update(require_token="only-for-others", path_prefix="/api/models")  # HF search answers 401
    results, warnings = hub.search("ink", "Both")
    assert [m.name for m in results] == ["Ink Style"]
    assert len(warnings) == 1 and warnings[0].startswith("huggingface search failed")


def test_civitai_download_runs_as_a_job_and_writes_the_a1111_sidecar_and_preview(tmp_path, hub_env):
    landed: list[tuple[str, Path]] = []
    folders = a1111_install(tmp_path / "webui")
    hub = ui.ModelHub(folders, on_downloaded=lambda kind, path: landed.append((kind, path)))
    hub_env.add_civitai_model("Ink Style", trained_words=["inkstyle", "lineart"], settings={"strength": 0.7})
    (meta,), _ = hub.search("ink", "CivitAI")
    versions = hub.versions(meta)
    assert versions and versions[0][1] == meta.version_id
    assert "inkstyle" in hub.details_markdown(meta) and "Models/Lora".lower() in hub.details_markdown(meta).lower()

    job = _finished(hub, hub.start_download(meta, ui.weight_files(meta)[0].name))
    path = Path(job.path)
    assert path.parent == tmp_path / "webui" / "models" / "Lora" and path.is_file()
    assert not list(path.parent.glob("*.part"))
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["activation text"] == "inkstyle, lineart"
    assert sidecar["preferred weight"] == 0.7 and sidecar["sd version"] == "SDXL"
    assert path.with_name(path.stem + ".preview.png").read_bytes()[:4] == b"\x89PNG"
    assert landed == [("loras", path)]

    rows, summary = hub.library("loras")
    row = next(r for r in rows if r[-1] == str(path))
    assert row[5] == "inkstyle, lineart" and row[6] == "0.7" and len(row[7]) == 12
    assert summary.startswith("1 local models")
    hub.jobs.shutdown()


def test_huggingface_download_links_into_the_folder_and_reports_progress(hub, hub_env, tmp_path):
    data = mf.safetensors_bytes(mf.kohya_lora("sdxl"), mf.kohya_metadata("inky", "sdxl"), seed=4)
    hub_env.add_hf_repo(
        "someone/ink-lora",
        files={"README.md": b"# ink\n", "ink.safetensors": data},
        tags=["lora", "base_model:stabilityai/stable-diffusion-xl-base-1.0"],
    )
    (meta,), _ = hub.search("ink-lora", "HuggingFace")
    assert [f.name for f in ui.weight_files(meta)] == ["ink.safetensors"]
    job = _finished(hub, hub.start_download(meta))  # no file chosen: the repo's weight file
    path = Path(job.path)
    assert path == tmp_path / "models" / "loras" / "ink.safetensors" and path.read_bytes() == data
    assert job.done_bytes == job.total_bytes == len(data)
    assert path.with_suffix(".json").is_file()
    rows = hub.job_rows()
    assert rows[0][0] == job.id and rows[0][2] == DONE and rows[0][3] == "100%"


def test_a_download_named_like_a_different_file_lands_apart_and_the_job_shows_where(hub, hub_env, tmp_path):
    data = mf.safetensors_bytes(mf.kohya_lora("sdxl"), seed=91)
    hub_env.add_hf_repo("someone/ink-model", files={"model.safetensors": data}, tags=["lora"])
    loras = tmp_path / "models" / "loras"
    loras.mkdir(parents=True)
    (loras / "model.safetensors").write_bytes(mf.safetensors_bytes(mf.kohya_lora("sdxl"), seed=92))

    (meta,), _ = hub.search("ink-model", "HuggingFace")
    job = _finished(hub, hub.start_download(meta))

    placed = loras / "someone__ink-model" / "model.safetensors"
    assert Path(job.path) == placed and placed.read_bytes() == data
    assert hub.job_rows()[0][6] == str(placed)  # the table's last column: where the file went


def test_cancel_of_a_finished_job_says_so(hub):
    assert hub.cancel("") == "Choose a download to cancel."
    assert "not running" in hub.cancel("job-404")


def test_writes_are_refused_when_the_guard_says_so(tmp_path, hub_env):
    hub = ui.ModelHub(standalone_folders(tmp_path / "m"), write_guard=lambda: "not from the network")
    hub_env.add_civitai_model("Ink Style")
    (meta,), _ = hub.search("ink", "CivitAI")
    with pytest.raises(ConfigError, match="not from the network"):
        hub.start_download(meta)
    with pytest.raises(ConfigError):
        hub.save_settings(hf_token="hf_" + "x" * 30)
    with pytest.raises(ConfigError):
        hub.cleanup(dry_run=False)
    assert hub.cleanup(dry_run=True)[1].startswith("Would delete")  # a preview changes nothing: allowed
    assert not config.settings_path().exists()
    hub.jobs.shutdown()


def test_settings_are_written_0600_and_tokens_never_shown(hub):
    token = "hf_" + "A" * 34
    text = hub.save_settings(
        token, "civitai-key-123", hf_endpoint="https://mirror.example", cache_limit_gb=20, max_connections=4
    )
    assert token not in text and "civitai-key-123" not in text
    assert "HuggingFace token: set" in text and "CivitAI token: set" in text
    path = config.settings_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["hf_token"] == token and stored["hf_endpoint"] == "https://mirror.example"
    assert stored["cache_limit_gb"] == 20 and stored["max_connections"] == 4
    shown = hub.settings_view()
    assert shown["hf_token"] == "set" and token not in json.dumps(shown)

    hub.save_settings("", "")  # blank boxes keep the stored tokens
    assert config.load_settings()["civitai_token"] == "civitai-key-123"
    hub.save_settings(clear_civitai_token=True)
    assert hub.settings_view()["civitai_token"] == "not set"
    with pytest.raises(ConfigError, match="not a URL"):
        hub.save_settings(civitai_endpoint="civitai.example")


def test_settings_panel_handler_clears_the_token_boxes(hub):
    blocks = ui.build_blocks(hub)
    save = handler(blocks, "run_save")
    token = "hf_" + "B" * 34
    status, hf_box, civ_box, *_rest, tokens, _cache = save(token, "", False, False, "", "", 0, 8, False, False, "")
    assert hf_box == "" and civ_box == "" and token not in status and "**set**" in tokens


def test_shared_cache_setting_is_checked_saved_and_cleared(hub, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    assert hub.settings_view()["shared_cache_status"].startswith("No shared cache")
    text = hub.save_settings(shared_cache=f"  {share}  ")
    assert "⚠️" not in text and config.load_settings()["shared_cache"] == str(share)
    assert hub.settings_view()["shared_cache_status"] == (
        f"Downloads go through the shared cache {share} (named by the setting)."
    )

    with pytest.raises(ConfigError, match="Unsupported shared cache 'ftp://x'"):
        hub.save_settings(shared_cache="ftp://x")
    with pytest.raises(ConfigError, match="relative path"):
        hub.save_settings(shared_cache="share")
    assert config.load_settings()["shared_cache"] == str(share)  # a refused value changes nothing
    hub.save_settings(nsfw=True)  # a caller without the box leaves the cache alone
    assert config.load_settings()["shared_cache"] == str(share)

    text = hub.save_settings(shared_cache=str(tmp_path / "not-mounted"))
    assert "⚠️ The folder" in text and "does not exist here" in text
    hub.save_settings(shared_cache="")
    assert config.load_settings()["shared_cache"] is None
    assert "shared_cache" not in json.loads(config.settings_path().read_text(encoding="utf-8"))


def test_shared_cache_environment_variable_wins_and_the_panel_says_so(hub, tmp_path, monkeypatch):
    hub.save_settings(shared_cache=str(tmp_path))
    monkeypatch.setenv("HUBLOADER_SHARED_CACHE", "s3://site-models/cache")
    assert hub.settings_view()["shared_cache_status"] == (
        "Downloads go through the shared cache s3://site-models/cache "
        "(named by HUBLOADER_SHARED_CACHE, which overrides the setting)."
    )
    blocks = ui.build_blocks(hub)
    box = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "hubloader_shared_cache")
    assert box.value == str(tmp_path) and "HUBLOADER_SHARED_CACHE is set" in box.info
    save = handler(blocks, "run_save")
    status, *_rest, cache_status = save("", "", False, False, "", "", 0, 8, False, False, "ftp://x")
    assert status.startswith("⚠️ Unsupported shared cache 'ftp://x'") and config.load_settings()["shared_cache"]
    status, *_rest, cache_status = save("", "", False, False, "", "", 0, 8, False, False, "")
    assert status.startswith("Saved") and config.load_settings()["shared_cache"] is None
    assert "HUBLOADER_SHARED_CACHE" in cache_status  # the environment still names one


def test_cache_cleanup_dry_run_lists_what_would_go_and_deletes_nothing(hub, hub_env):
    hub_env.add_civitai_model("Ink Style")
    hub_env.add_civitai_model("Ink Paper")
    results, _ = hub.search("ink", "CivitAI")
    paths = [Path(_finished(hub, hub.start_download(m)).path) for m in results]
    rows, text = hub.cleanup(keep_recent=0, max_size_gb=0, dry_run=True)
    assert text.startswith("Would delete 2 files")
    assert sorted(r[2] for r in rows) == sorted(str(p) for p in paths)
    assert all(p.is_file() for p in paths)
    # Delete removes only what the last preview listed: a fresh hub has no preview, so nothing goes.
    fresh = ui.ModelHub(hub.folders, jobs=hub.jobs)
    assert fresh.cleanup(keep_recent=0, max_size_gb=0, dry_run=False)[1].startswith("Nothing was deleted")
    assert all(p.is_file() for p in paths)
    rows, text = hub.cleanup(keep_recent=1, max_size_gb=0, dry_run=True)  # the most recent one is never listed
    assert text.startswith("Would delete 1 files") and len(rows) == 1
    rows, text = hub.cleanup(keep_recent=1, max_size_gb=0, dry_run=False)
    assert text.startswith("Deleted 1 files") and sum(p.is_file() for p in paths) == 1
    assert [r[2] for r in rows] == [str(p) for p in paths if not p.exists()]
    assert hub.cleanup(dry_run=False)[1].startswith("Nothing was deleted")  # a preview confirms one Delete only


def test_rescan_indexes_files_put_there_by_hand_and_marks_duplicates(hub, tmp_path):
    lora = mf.safetensors_bytes(mf.kohya_lora("sd15"), mf.kohya_metadata("twin", "sd15"), seed=9)
    folder = tmp_path / "models" / "loras"
    folder.mkdir(parents=True)
    (folder / "a.safetensors").write_bytes(lora)
    (folder / "b.safetensors").write_bytes(lora)
    assert "2 new or changed" in hub.rescan()
    from hubloader.registry import ModelRegistry

    with ModelRegistry() as registry:
        registry.enrich(lookup_civitai=False)  # hashing is background work; do it now
    rows, summary = hub.library()
    names = {r[-1].rsplit("/", 1)[-1]: r[8] for r in rows}
    assert names == {"a.safetensors": "b.safetensors", "b.safetensors": "a.safetensors"}
    assert "1 duplicate groups" in summary
    assert "0 new or changed" in hub.rescan()


@pytest.mark.slow
def test_missing_models_from_infotext_resolve_by_hash_and_fetch_in_one_click(tmp_path, hub_env):
    folders = a1111_install(tmp_path / "webui")
    hub = ui.ModelHub(folders)
    hub_env.add_civitai_model("Ink Style", trained_words=["inkstyle"])
    hub_env.add_civitai_model("Tiny Checkpoint", type="Checkpoint", base_model="SD 1.5")
    lora = next(m for m in hub.search("ink", "CivitAI")[0])
    checkpoint = next(m for m in hub.search("tiny", "CivitAI")[0])
    infotext = (
        "a cat, <lora:ink_style:0.8>\nNegative prompt: blurry\n"
        f"Steps: 20, Sampler: Euler a, Model hash: {checkpoint.hashes['AutoV2']}, Model: tiny_ckpt, "
        f'Lora hashes: "ink_style: {lora.hashes["AutoV3"]}"'
    )
    report = hub.missing(infotext)
    rows = {r[0]: r for r in hub.missing_rows(report)}
    assert rows["ink_style"][1] == "loras" and rows["ink_style"][2] == "resolved"
    assert rows["tiny_ckpt"][1] == "checkpoints" and rows["tiny_ckpt"][2] == "resolved"
    assert rows["ink_style"][3].startswith("civitai:")
    # The plan the tab shows under the table, from the same report (no second resolve).
    lines = hub.plan_of(report).summary_lines()
    assert any(line.startswith("Disk of ") and line.endswith("fits.") for line in lines), lines
    assert any(line.startswith("2 to fetch (") and "0 cannot be fetched now" in line for line in lines), lines

    jobs = hub.fetch_missing(report)
    assert len(jobs) == 2
    for job in jobs:
        _finished(hub, job)
    again = {r[0]: r[2] for r in hub.missing_rows(hub.missing(infotext))}
    assert set(again.values()) <= {"found", "found_elsewhere", "found_by_hash"}
    (lora_file,) = (tmp_path / "webui" / "models" / "Lora").glob("*.safetensors")
    assert json.loads(lora_file.with_suffix(".json").read_text(encoding="utf-8"))["activation text"] == "inkstyle"
    assert list((tmp_path / "webui" / "models" / "Stable-diffusion").glob("*.safetensors"))
    hub.jobs.shutdown()


def test_missing_models_from_a_dropped_png(tmp_path, hub_env):
    from PIL import Image, PngImagePlugin

    hub = ui.ModelHub(a1111_install(tmp_path / "webui"))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, Model hash: 0123456789, Model: nowhere_model")
    image = tmp_path / "cat.png"
    Image.new("RGB", (8, 8)).save(image, pnginfo=info)
    report = hub.missing("", image.read_bytes())
    ((name, kind, status, *_),) = hub.missing_rows(report)
    assert (name, kind, status) == ("nowhere_model", "checkpoints", "unresolved")
    assert hub.fetch_missing(report) == []
    hub.jobs.shutdown()


def test_missing_needs_some_input(hub):
    from hubloader.core.errors import InvalidReference

    with pytest.raises(InvalidReference, match="Paste generation parameters"):
        hub.missing("", None)


def test_handler_errors_become_status_messages(hub):
    blocks = ui.build_blocks(hub)
    table, state, status = handler(blocks, "run_check")("", None)
    assert status.startswith("⚠️ Paste generation parameters")


@pytest.mark.slow
def test_served_page_config_holds_the_tab(hub, monkeypatch):
    """The Blocks really serve: the page's /config lists our components (catches arguments a gradio rejects late)."""
    import requests

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    blocks = ui.build_blocks(hub)
    blocks.queue()
    blocks.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        page = requests.get(blocks.local_url.rstrip("/") + "/config", timeout=30).json()
    finally:
        blocks.close()
    elem_ids = {c.get("props", {}).get("elem_id") for c in page["components"]}
    assert {"hubloader_results", "hubloader_jobs", "hubloader_missing_file", "hubloader_civitai_token"} <= elem_ids


@pytest.mark.slow
def test_details_list_every_version_and_an_older_one_downloads(hub, hub_env, tmp_path):
    model_id, old_version = hub_env.add_civitai_model("Ink Style", version_name="v1", trained_words=["ink1"])
    new_version = hub_env.add_civitai_version(model_id, "v2", trained_words=["ink2"])
    (meta,), _ = hub.search("ink", "CivitAI")
    labels = [label for label, _ in hub.versions(meta)]
    assert [ui.version_of_label(meta, label) for label in labels] == [str(new_version), str(old_version)]
    older = hub.version(meta, ui.version_of_label(meta, labels[1]))
    assert older.version_id == str(old_version) and older.trigger_words == ["ink1"]
    job = _finished(hub, hub.start_download(older, ui.weight_files(older)[0].name))
    sidecar = json.loads(Path(job.path).with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["activation text"] == "ink1"


def test_a_download_needing_a_civitai_token_fails_with_the_apps_advice(hub, hub_env):
    hub_env.add_civitai_model("Members Only", login_required=True)
    (meta,), _ = hub.search("Members Only", "CivitAI")
    job = hub.jobs.wait(hub.start_download(meta)["id"], timeout=60)
    assert job.state == "failed"
    assert "Set the CivitAI token in the Model Hub tab → Settings." in job.error
    assert "hubloader login" not in job.error and "HuggingFace" not in job.error


def test_card_text_and_urls_are_escaped_and_only_http_previews_are_shown(hub, hub_env):
    hub_env.add_civitai_model('<img src=x onerror="alert(1)">', trained_words=["<b>bold</b>"])
    (meta,), _ = hub.search("img", "CivitAI")
    html = cards.card(meta, 0)
    assert "<img src=x" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "<b>bold" not in html and "&lt;b&gt;bold" in html
    meta.preview_urls = ["javascript:alert(1)"]
    assert "javascript:" not in cards.card(meta, 0) and "<img" not in cards.card(meta, 0)
    meta.preview_urls = ['https://cdn.example/a"onload="x/width=900/p.jpeg']
    assert '"onload="' not in cards.card(meta, 0)


@pytest.mark.parametrize(
    ("url", "thumb"),
    [
        ("https://image.civitai.com/xG1/uuid/width=832/1.jpeg", "https://image.civitai.com/xG1/uuid/width=450/1.jpeg"),
        (
            "https://image.civitai.com/xG1/uuid/original=true/1.jpeg",
            "https://image.civitai.com/xG1/uuid/width=450/1.jpeg",
        ),
        (
            "https://image.civitai.com/xG1/uuid/anim=false,width=1024/1.jpeg",
            "https://image.civitai.com/xG1/uuid/anim=false,width=450/1.jpeg",
        ),
        ("https://cdn.example/plain/1.jpeg", "https://cdn.example/plain/1.jpeg"),
    ],
)
def test_civitai_previews_are_asked_at_thumbnail_width(url, thumb):
    assert cards.thumbnail_url(url) == thumb


def test_a_card_click_selects_its_result_and_shows_copyable_trigger_words(hub, hub_env):
    hub_env.add_civitai_model("Ink Style", trained_words=["inkstyle", "ink wash"])
    blocks = ui.build_blocks(hub)
    results, _ = hub.search("ink", "CivitAI")
    details, _version, _file, chosen, chips = handler(blocks, "select")("0:1733000000", results)
    assert chosen is results[0] and "### Ink Style" in details
    assert 'data-copy="inkstyle"' in chips and 'data-copy="ink wash"' in chips  # one chip per word
    assert 'data-copy="inkstyle, ink wash"' in chips  # and one copying them all
    assert all(isinstance(v, dict) for v in handler(blocks, "select")("", results))  # no pick: nothing changes


def test_downloads_list_shows_bars_cancel_retry_and_the_whole_error():
    error = "CivitAI refused the download of <Ink Style>: log in. " + "Then try again. " * 20
    jobs = [
        {"id": "job-1", "label": "Ink", "state": "running", "done_bytes": 50, "total_bytes": 200,
         "speed_bps": 10.0, "error": "", "path": ""},
        {"id": "job-2", "label": "Ink 2", "state": "failed", "done_bytes": 0, "total_bytes": 0,
         "speed_bps": 0, "error": error, "path": ""},
        {"id": "job-3", "label": "Ink 3", "state": "cancelled", "done_bytes": 5, "total_bytes": 9,
         "speed_bps": 0, "error": "Cancelled.", "path": ""},
        {"id": "job-4", "label": "Ink 4", "state": "done", "done_bytes": 9, "total_bytes": 9,
         "speed_bps": 0, "error": "", "path": "/m/loras/ink.safetensors"},
    ]  # fmt: skip
    html = ui.cards.jobs_html(jobs, finished=ui.FINISHED)
    rows = html.split("<tr")[2:]
    assert '<progress value="50" max="200"></progress> 25%' in rows[0] and 'data-v="cancel:job-1"' in rows[0]
    assert (
        'data-v="retry:job-2"' in rows[1] and ">Retry</button>" in rows[1] and ui.cards.esc(error) in rows[1]
    )  # never cut short
    assert 'data-v="retry:job-3"' in rows[2] and ">Resume</button>" in rows[2]  # bytes kept: it resumes
    assert "<button" not in rows[3] and "/m/loras/ink.safetensors" in rows[3]
    assert cards.job_action("retry:job-2:1733") == ("retry", "job-2") and cards.job_action("x:y") is None


def test_a_cancelled_download_resumes_from_its_row(hub, hub_env):
    hub_env.add_civitai_model("Big Ink", files=[{"name": "big.safetensors", "data": ("generated", 4 << 20)}])
    (meta,), _ = hub.search("big ink", "CivitAI")
    hub_env.faults.update(bandwidth_per_connection=256 << 10)
    blocks = ui.build_blocks(hub)
    act = handler(blocks, "act")
    job = hub.start_download(meta)
    deadline = time.monotonic() + 30
    while hub.jobs.get(job["id"]).done_bytes < (256 << 10):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    status, _table = act(f"cancel:{job['id']}:1")
    assert status.startswith(f"Cancelling {job['id']}")
    cancelled = hub.jobs.wait(job["id"], timeout=30)
    assert cancelled.state == "cancelled"
    hub_env.faults.update(bandwidth_per_connection=None)
    before = len(hub_env.requests)
    status, table = act(f"retry:{job['id']}:2")
    assert status.startswith("Started Big Ink")
    again = next(j for j in hub.jobs.list() if j.id != job["id"])
    _finished(hub, again.to_dict())
    assert Path(again.path).stat().st_size == 4 << 20
    fetched = [r.headers.get("Range", "") for r in list(hub_env.requests)[before:] if r.path.startswith("/storage/")]
    assert fetched and not any(r in ("", "bytes=0-") or r.startswith("bytes=0-") for r in fetched), fetched  # resumed
    assert "nothing to retry" in act(f"retry:{again.id}:3")[0]  # a finished download has nothing to retry


def test_retry_is_a_write_and_the_guard_refuses_it(tmp_path):
    hub = ui.ModelHub(standalone_folders(tmp_path / "m"), write_guard=lambda: "not from the network")
    with pytest.raises(ConfigError, match="not from the network"):
        hub.retry("job-1")


def test_settings_show_each_endpoint_and_where_it_comes_from(hub, monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("CIVITAI_ENDPOINT", raising=False)
    assert hub.endpoints() == [
        ("HuggingFace", "https://huggingface.co", "default"),
        ("CivitAI", "https://civitai.com", "default"),
    ]
    hub.save_settings(civitai_endpoint="https://civitai.mirror.example")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/hf")
    (hf, civitai) = hub.endpoints()
    assert hf == (
        "HuggingFace",
        "http://127.0.0.1:9/hf",
        "environment variable HF_ENDPOINT (overrides the settings file)",
    )
    assert civitai == ("CivitAI", "https://civitai.mirror.example", f"settings file {config.settings_path()}")
    blocks = ui.build_blocks(hub)
    shown = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "hubloader_endpoints")
    assert "`http://127.0.0.1:9/hf` | environment variable HF_ENDPOINT" in shown.value


def test_library_shows_only_the_models_of_this_apps_folders_and_their_trigger_words(hub, tmp_path):
    lora = mf.safetensors_bytes(mf.kohya_lora("sd15"), mf.kohya_metadata("mine", "sd15"), seed=21)
    mine = tmp_path / "models" / "loras"
    mine.mkdir(parents=True)
    (mine / "mine.safetensors").write_bytes(lora)
    other = ui.ModelHub(standalone_folders(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere" / "loras").mkdir(parents=True)
    (tmp_path / "elsewhere" / "loras" / "theirs.safetensors").write_bytes(
        mf.safetensors_bytes(mf.kohya_lora("sd15"), seed=22)
    )
    hub.rescan(), other.rescan()
    rows, summary = hub.library()
    assert [Path(r[-1]).name for r in rows] == ["mine.safetensors"] and summary.startswith("1 local models")
    assert [Path(r[-1]).name for r in other.library()[0]] == ["theirs.safetensors"]
    other.jobs.shutdown()


def test_library_fills_when_the_page_opens(hub):
    blocks = ui.build_blocks(hub)
    if isinstance(blocks.fns, dict):  # gradio >= 4.? keeps each event's triggers on its function
        loads = [fn.fn for fn in blocks.fns.values() if "load" in str(fn.targets)]
    else:  # 3.41: a list of functions beside a list of dependency dicts
        triggers = [str(dep.get("trigger")) + str(dep.get("targets")) for dep in blocks.dependencies]
        loads = [fn.fn for fn, trigger in zip(blocks.fns, triggers, strict=True) if "load" in trigger]
    assert [getattr(fn, "__name__", "") for fn in loads] == ["show_library"]


def test_cleanup_asks_naming_what_goes_and_only_the_confirmation_deletes(hub, hub_env):
    hub_env.add_civitai_model("Ink Style")
    (meta,), _ = hub.search("ink", "CivitAI")
    path = Path(_finished(hub, hub.start_download(meta)).path)
    blocks = ui.build_blocks(hub)
    table, status, delete, confirm, keep = handler(blocks, "run_preview")(0, 0)
    assert status.startswith("Would delete 1 files") and delete["interactive"] and not confirm["interactive"]
    _, question, delete, confirm, keep = handler(blocks, "ask")(status)
    assert "Delete the files listed below?" in question and "This deletes 1 files" in question
    assert confirm["interactive"] and keep["interactive"] and not delete["interactive"] and path.is_file()
    _, status, delete, *_ = handler(blocks, "cancel_delete")()
    assert status == "Nothing deleted." and path.is_file()
    _, status, *_ = handler(blocks, "run_delete")(0, 0)
    assert status.startswith("Deleted 1 files") and not path.exists()
