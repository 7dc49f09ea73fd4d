"""scripts/hubloader_tab.py loaded the way A1111 loads it, over a stand-in for the few ``modules`` it touches.

The stand-in records what A1111's real objects would receive (callbacks, settings options); the tab,
the hub layer, FastAPI routes and files on disk are all real. The real host runs in test_a1111_realhost.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("fastapi")

from hubloader.core import settings as config  # noqa: E402
from hubloader.core.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "hubloader_tab.py"


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None):
        self.default, self.label, self.component = default, label, component
        self.component_args, self.onchange, self.section = component_args, onchange, section


class OptionHTML(OptionInfo):
    def __init__(self, text):
        super().__init__(text)


class Options:
    def __init__(self):
        self.data, self.data_labels = {}, {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)


@pytest.fixture
def a1111(tmp_path, monkeypatch):
    """A stand-in ``modules`` package, then the tab script imported as A1111 imports it."""
    calls: dict[str, list] = {"callbacks": [], "loras_refreshed": []}
    modules = types.ModuleType("modules")
    callbacks = types.ModuleType("modules.script_callbacks")
    for hook in ("on_ui_tabs", "on_ui_settings", "on_app_started", "on_script_unloaded"):
        setattr(callbacks, hook, lambda fn, hook=hook: calls["callbacks"].append((hook, fn)))
    scripts = types.ModuleType("modules.scripts")
    scripts.basedir = lambda: str(ROOT)
    shared = types.ModuleType("modules.shared")
    shared.cmd_opts = types.SimpleNamespace(disable_extension_access=False, lora_dir=str(tmp_path / "my-loras"))
    shared.opts = Options()
    shared.OptionInfo, shared.OptionHTML = OptionInfo, OptionHTML
    paths = types.ModuleType("modules.paths")
    paths.data_path = str(tmp_path / "webui")
    networks = types.ModuleType("networks")
    networks.list_available_networks = lambda: calls["loras_refreshed"].append(True)
    modules.script_callbacks, modules.scripts, modules.shared, modules.paths = callbacks, scripts, shared, paths
    for name, module in {
        "modules": modules,
        "modules.script_callbacks": callbacks,
        "modules.scripts": scripts,
        "modules.shared": shared,
        "modules.paths": paths,
        "networks": networks,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("hubloader_tab.py", SCRIPT)  # A1111's load_module()
    tab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tab)
    registered = dict(calls["callbacks"])
    yield types.SimpleNamespace(tab=tab, shared=shared, registered=registered, calls=calls, root=tmp_path)
    registered["on_script_unloaded"]()


def test_import_registers_the_callbacks_and_captures_basedir(a1111):
    assert set(a1111.registered) == {"on_ui_tabs", "on_ui_settings", "on_app_started", "on_script_unloaded"}
    assert a1111.tab.BASEDIR == str(ROOT)


def test_tab_is_the_model_hub_blocks_over_a1111_folders(a1111):
    ((blocks, title, elem_id),) = a1111.registered["on_ui_tabs"]()
    assert (title, elem_id) == ("Model Hub", "hubloader") and isinstance(blocks, gr.Blocks)
    hub = blocks.hubloader_hub
    assert hub.folders.target("loras") == a1111.root / "my-loras"  # --lora-dir honoured
    assert hub.folders.target("checkpoints") == a1111.root / "webui" / "models" / "Stable-diffusion"
    assert hub.folders.target("embeddings") == a1111.root / "webui" / "embeddings"


def test_settings_section_has_no_token_and_writes_through_to_the_0600_file(a1111):
    config.save_settings({"hf_token": "hf_" + "S" * 34, "nsfw": False})
    a1111.registered["on_ui_settings"]()
    opts = a1111.shared.opts
    assert all(info.section == ("hubloader", "Model Hub") for info in opts.data_labels.values())
    assert not any("token" in key and not key.endswith("_note") for key in opts.data)
    assert "hf_" + "S" * 34 not in json.dumps({k: str(v) for k, v in opts.data.items()})
    assert opts.data["hubloader_max_connections"] == config.DEFAULTS["max_connections"]  # the engine's own default

    opts.data["hubloader_nsfw"] = True
    opts.data["hubloader_max_connections"] = 12
    for key in ("hubloader_nsfw", "hubloader_max_connections"):
        opts.data_labels[key].onchange()
    stored = config.load_settings()
    assert stored["nsfw"] is True and stored["max_connections"] == 12
    assert stored["hf_token"] == "hf_" + "S" * 34  # untouched


def test_a1111_options_cannot_move_bytes_even_when_the_tab_refuses_writes(a1111):
    """/sdapi/v1/options and the Settings page write options with no extension-access check: none of them may
    say where bytes come from or go, or trust pickles (those stay in the tab's guarded Settings)."""
    a1111.shared.cmd_opts.disable_extension_access = True
    a1111.registered["on_ui_settings"]()
    opts = a1111.shared.opts
    assert {setting for setting, *_ in a1111.tab.OPTIONS.values()}.isdisjoint(config.LOCAL_ONLY_KEYS)
    for key, value in (
        ("hubloader_hf_endpoint", "http://attacker.example"),
        ("hubloader_allow_pickle", True),
        ("hubloader_cache_limit_gb", 0.001),  # a limit that would make the next cleanup list every download
    ):
        assert key not in opts.data_labels  # no option, so no onchange writing through to Hubloader's file
        opts.data[key] = value  # what a POST to /sdapi/v1/options stores in config.json
    for info in opts.data_labels.values():
        if info.onchange is not None:
            info.onchange()
    stored = config.load_settings()
    assert stored["hf_endpoint"] is None and stored["civitai_endpoint"] is None and stored["allow_pickle"] is False
    assert stored["cache_limit_gb"] is None
    with pytest.raises(ConfigError, match="reachable from the network"):
        a1111.tab.model_hub().save_settings(hf_endpoint="http://attacker.example", allow_pickle=True)
    with pytest.raises(ConfigError, match="reachable from the network"):
        a1111.tab.model_hub().save_settings(cache_limit_gb=0.001)
    assert config.load_settings()["cache_limit_gb"] is None


def test_the_tab_sets_the_cache_limit_when_a1111_allows_extension_writes(a1111):
    """The limit moved from A1111's Settings page (writable by anyone who reaches /sdapi/v1/options) to the tab's
    own Settings, which obey A1111's extension-access rule."""
    a1111.tab.model_hub().save_settings(cache_limit_gb=12.5)
    assert config.load_settings()["cache_limit_gb"] == 12.5


def test_routes_list_the_queue_and_obey_disable_extension_access(a1111):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    a1111.registered["on_app_started"](None, app)
    client = TestClient(app)
    assert client.get("/hubloader/downloads").json() == {"downloads": []}
    assert client.post("/hubloader/downloads/job-1/cancel").status_code == 404

    a1111.shared.cmd_opts.disable_extension_access = True
    assert client.get("/hubloader/downloads").status_code == 403
    assert "enable-insecure-extension-access" in client.post("/hubloader/downloads/job-1/cancel").json()["error"]
    with pytest.raises(ConfigError, match="reachable from the network"):
        a1111.tab.model_hub().save_settings(nsfw=True)


def test_a_download_refreshes_the_lora_list(a1111, hub_env):
    hub_env.add_civitai_model("Ink Style", trained_words=["inkstyle"])
    hub = a1111.tab.model_hub()
    (meta,), _ = hub.search("ink", "CivitAI")
    job = hub.jobs.wait(hub.start_download(meta)["id"], timeout=60)
    assert job.state == "done", job.error
    assert Path(job.path).parent == a1111.root / "my-loras"
    assert a1111.calls["loras_refreshed"] == [True]
    assert json.loads(Path(job.path).with_suffix(".json").read_text(encoding="utf-8"))["activation text"] == "inkstyle"
