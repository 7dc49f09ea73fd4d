"""ComfyUI node contracts, with a folder_paths stand-in over real temporary folders (no ComfyUI needed)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.comfy_stub import folder_paths as stub_folder_paths
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes, write_safetensors

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def comfy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """ComfyUI's folder_paths module (the stand-in) over ``tmp_path/comfy/models``."""
    stub_folder_paths.setup(tmp_path / "comfy")
    monkeypatch.setitem(sys.modules, "folder_paths", stub_folder_paths)
    return stub_folder_paths


@pytest.fixture
def nodes(comfy):
    from nodes import loaders

    return loaders


def _lora(comfy, name: str = "style.safetensors", **metadata: str) -> Path:
    path = Path(comfy.get_folder_paths("loras")[0]) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors(path, kohya_lora(), metadata or None)


def test_import_is_cheap_and_scans_nothing(tmp_path):
    """The package as ComfyUI imports it (by file path, under a path-derived name) loads no heavy module."""
    code = f"""
import sys, time, json
sys.path.insert(0, {str(ROOT / "tests" / "comfy_stub")!r})
import folder_paths
folder_paths.setup(__import__("pathlib").Path({str(tmp_path / "comfy")!r}))
import importlib.util
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("x_x_hubloader_pack", {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
heavy = [m for m in ("torch", "gradio", "huggingface_hub", "aiohttp", "requests", "sqlite3", "comfy", "numpy")
         if m in sys.modules]
print(json.dumps({{"elapsed": elapsed, "heavy": heavy, "scans": folder_paths.scans,
                  "nodes": sorted(module.NODE_CLASS_MAPPINGS), "web": module.WEB_DIRECTORY}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"import of the package took {result['elapsed'] * 1000:.1f} ms")
    assert result["heavy"] == []
    assert result["scans"] == 0
    assert "HubloaderLoraLoader" in result["nodes"] and "HubloaderCheckpointLoader" in result["nodes"]
    assert (ROOT / result["web"] / "hubloader.js").is_file()


def test_every_node_honours_the_v1_contract(nodes, comfy):
    _lora(comfy)
    for node_id, cls in nodes.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("Hubloader")
        assert node_id in nodes.NODE_DISPLAY_NAME_MAPPINGS
        types = cls.INPUT_TYPES()
        assert set(types) <= {"required", "optional", "hidden"}
        assert callable(getattr(cls(), cls.FUNCTION))
        assert isinstance(cls.RETURN_TYPES, tuple)
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
        # FUNCTION takes every declared input by name
        params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
        for section in ("required", "optional"):
            for name in types.get(section, {}):
                assert name in params, f"{node_id}.{cls.FUNCTION} lacks {name}"


def test_combo_lists_local_files_and_source_is_a_string(nodes, comfy):
    _lora(comfy, "sub/style.safetensors")
    types = nodes.HubLoraLoader.INPUT_TYPES()
    combo, options = types["required"]["lora_name"]
    assert combo == [str(Path("sub/style.safetensors"))]
    assert "tooltip" in options
    assert types["required"]["source"][0] == "STRING"
    assert types["optional"]["prompt"][1]["forceInput"] is True
    assert types["hidden"] == {"unique_id": "UNIQUE_ID", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert nodes.HubLoraLoader.RETURN_TYPES == ("MODEL", "CLIP", "STRING", "STRING")
    only = nodes.HubLoraLoaderModelOnly.INPUT_TYPES()["required"]
    assert "clip" not in only and "strength_clip" not in only and "lora_name" in only


def test_validate_inputs_names_the_combo_so_comfyui_skips_only_its_list_check(nodes):
    for cls in nodes.NODE_CLASS_MAPPINGS.values():
        if not hasattr(cls, "VALIDATE_INPUTS"):
            continue
        spec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
        assert spec.varkw is None, f"{cls.__name__}: **kwargs would switch off every built-in check"
        assert cls.NAME in spec.args and "source" in spec.args


@pytest.mark.parametrize(
    ("name", "source", "ok"),
    [
        ("not-downloaded-yet.safetensors", "", True),  # a shared workflow's file: accepted, fetched at run time
        ("sub/dir/x.safetensors", "", True),
        ("../../etc/passwd.safetensors", "", "is not a file name inside"),
        ("/abs/x.safetensors", "", "is not a file name inside"),
        ("notes.txt", "", "does not end in a model file extension"),
        ("", "", "no model chosen"),
        ("", "civitai:123@456", True),
        ("", "owner/repo/file.safetensors", True),
        ("", "urn:air:sdxl:lora:civitai:1@2", True),
        ("", "civitai:abc", "source: "),
        ("", "https://example.com/x.safetensors", "neither a CivitAI nor a HuggingFace URL"),
    ],
)
def test_validate_inputs(nodes, name, source, ok):
    result = nodes.HubLoraLoader.VALIDATE_INPUTS(lora_name=name, source=source)
    if ok is True:
        assert result is True
    else:
        assert isinstance(result, str) and ok in result


def test_is_changed_follows_the_file_not_the_clock(nodes, comfy):
    before = nodes.HubLoraLoader.IS_CHANGED(lora_name="style.safetensors", source="")
    assert before == nodes.HubLoraLoader.IS_CHANGED(lora_name="style.safetensors", source="")
    path = _lora(comfy)
    after = nodes.HubLoraLoader.IS_CHANGED(lora_name="style.safetensors", source="")
    assert after != before and str(path) in after
    assert after == nodes.HubLoraLoader.IS_CHANGED(lora_name="style.safetensors", source="")
    path.write_bytes(path.read_bytes() + b" ")
    assert nodes.HubLoraLoader.IS_CHANGED(lora_name="style.safetensors", source="") != after
    # a reference names fixed bytes: its canonical spelling, whatever the combo says
    a = nodes.HubLoraLoader.IS_CHANGED(
        lora_name="a.safetensors", source="https://civitai.com/models/5?modelVersionId=7"
    )
    b = nodes.HubLoraLoader.IS_CHANGED(lora_name="b.safetensors", source="civitai:5@7")
    assert a == b == "ref:civitai:5@7"


def test_workflow_url_comes_from_the_nodes_properties_models(nodes):
    workflow = {
        "nodes": [
            {
                "id": 3,
                "properties": {
                    "models": [
                        {
                            "name": "x.safetensors",
                            "url": "https://civitai.com/api/download/models/9",
                            "directory": "loras",
                        }
                    ]
                },
            },
            {
                "id": 4,
                "properties": {
                    "models": [{"name": "y.safetensors", "url": "https://hf.co/a/b/resolve/main/y.safetensors"}]
                },
            },
        ],
        "models": [
            {
                "name": "z.safetensors",
                "url": "https://huggingface.co/o/r/resolve/main/z.safetensors",
                "directory": "vae",
            }
        ],
    }
    extra = {"workflow": workflow}
    assert nodes.workflow_url(extra, "3", "x.safetensors").endswith("/models/9")
    assert nodes.workflow_url(extra, "3", "y.safetensors") == ""  # another node's entry is not ours
    assert nodes.workflow_url(extra, "3", "sub/z.safetensors").endswith("z.safetensors")
    assert nodes.workflow_url(None, "3", "x.safetensors") == ""


def test_missing_model_without_a_source_says_what_to_do(nodes, comfy):
    with pytest.raises(nodes.MissingModel, match="not in ComfyUI's loras folder") as err:
        nodes.ensure_local("loras", "absent.safetensors", "")
    assert "source" in str(err.value)


def test_local_file_is_used_without_network(nodes, comfy):
    path = _lora(comfy)
    assert nodes.ensure_local("loras", "style.safetensors", "").path == path


def test_a_node_run_again_reuses_its_fetch_without_the_network_in_the_same_folders_only(
    nodes, comfy, hub_env, tmp_path
):
    data = safetensors_bytes(kohya_lora(), seed=41)
    model_id, version_id = hub_env.add_civitai_model(
        "Again Ink", files=[{"name": "again_ink.safetensors", "data": data}]
    )
    ref = f"civitai:{model_id}@{version_id}"
    first = nodes.ensure_local("loras", "", ref)
    asked = len(hub_env.requests)
    assert nodes.ensure_local("loras", "", ref).path == first.path
    assert len(hub_env.requests) == asked  # the same reference into the same folder: nothing asked again

    comfy.setup(tmp_path / "other-comfy")  # another ComfyUI (other folders) in the same process
    again = nodes.ensure_local("loras", "", ref)
    assert again.path != first.path and again.path.read_bytes() == data
    assert len(hub_env.requests) > asked


def test_trigger_words_node_reads_the_local_file(nodes, comfy):
    _lora(comfy, "trig.safetensors", ss_tag_frequency=json.dumps({"1_x": {"zxc person": 9}}))
    words, weight, prompt = nodes.HubTriggerWords().read("trig.safetensors", prompt="a photo")
    assert isinstance(words, str) and isinstance(weight, float)
    assert prompt.endswith("a photo")


def test_prompt_joining():
    from nodes.loaders import _join_prompt, _weight

    assert _join_prompt(["zxc", "blue hair"], "a photo", True) == "zxc, blue hair, a photo"
    assert _join_prompt(["zxc"], "a photo", False) == "a photo"
    assert _join_prompt(["zxc"], "", True) == "zxc"
    assert _weight(True, 1.0, 0.7) == 0.7
    assert _weight(True, 1.0, None) == 1.0
    assert _weight(False, 0.4, 0.7) == 0.4


def test_root_package_exposes_comfyui_entry_points(comfy):
    spec = importlib.util.spec_from_file_location(
        "hubloader_pack_under_test", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert module.WEB_DIRECTORY == "./web"
        assert module.NODE_DISPLAY_NAME_MAPPINGS["HubloaderLoraLoader"] == "Hub LoRA Loader"
    finally:
        for name in [n for n in sys.modules if n.startswith(spec.name)]:
            del sys.modules[name]


class ComfyRuntime:
    """ComfyUI's progress bar (comfy.utils.ProgressBar) and interrupt flag (comfy.model_management), reduced to
    what our nodes call: a bar records its updates; ``interrupt_after_bytes`` plays the user pressing Cancel."""

    class InterruptProcessingException(Exception):
        pass

    def __init__(self) -> None:
        self.updates: list[tuple[int, int]] = []
        self.interrupted = False
        self.interrupt_after_bytes: int | None = None
        runtime = self

        class ProgressBar:
            def __init__(self, total: int) -> None:
                self.total = total

            def update_absolute(self, value: int, total: int | None = None) -> None:
                runtime.updates.append((value, total or self.total))
                if runtime.interrupt_after_bytes is not None and value >= runtime.interrupt_after_bytes:
                    runtime.interrupted = True

        def throw_exception_if_processing_interrupted() -> None:
            if runtime.interrupted:
                raise self.InterruptProcessingException()

        self.utils = types.SimpleNamespace(ProgressBar=ProgressBar)
        self.model_management = types.SimpleNamespace(
            InterruptProcessingException=self.InterruptProcessingException,
            processing_interrupted=lambda: runtime.interrupted,
            throw_exception_if_processing_interrupted=throw_exception_if_processing_interrupted,
        )


@pytest.fixture
def comfy_runtime(monkeypatch: pytest.MonkeyPatch) -> ComfyRuntime:
    runtime = ComfyRuntime()
    package = types.SimpleNamespace(utils=runtime.utils, model_management=runtime.model_management)
    monkeypatch.setitem(sys.modules, "comfy", package)
    monkeypatch.setitem(sys.modules, "comfy.utils", runtime.utils)
    monkeypatch.setitem(sys.modules, "comfy.model_management", runtime.model_management)
    return runtime


@pytest.mark.hf
@pytest.mark.parametrize("source", ["civitai", "huggingface"])
def test_comfyui_cancel_stops_a_node_download_and_the_next_run_resumes(
    nodes, comfy, comfy_runtime, hub_env, source, monkeypatch
):
    monkeypatch.setattr("nodes.fetch._fetched", {})  # a fresh ComfyUI process: no earlier test's fetch
    data = safetensors_bytes({"w": ("F32", (2048, 1024))}, seed=31)  # 8 MiB, sent at 2 MiB/s per connection
    loras = Path(comfy.get_folder_paths("loras")[0])
    if source == "civitai":
        model_id, version_id = hub_env.add_civitai_model(
            "Node Ink", files=[{"name": "big_ink.safetensors", "data": data}]
        )
        ref, partial_in = f"civitai:{model_id}@{version_id}", loras
    else:
        hub_env.add_hf_repo("someone/node-ink", files={"big_ink.safetensors": data})
        ref, partial_in = "someone/node-ink/big_ink.safetensors", Path(os.environ["HF_HUB_CACHE"])
    hub_env.faults.update(bandwidth_per_connection=2 * 1024 * 1024)
    comfy_runtime.interrupt_after_bytes = 1  # Cancel pressed once the bar has moved

    with pytest.raises(ComfyRuntime.InterruptProcessingException):  # ComfyUI's own way to end the prompt
        nodes.ensure_local("loras", "", ref)
    assert any(done > 0 for done, _ in comfy_runtime.updates)  # the node's bar showed the bytes arriving
    assert list(partial_in.rglob("*.part")) and not (loras / "big_ink.safetensors").exists()

    comfy_runtime.interrupted, comfy_runtime.interrupt_after_bytes, comfy_runtime.updates = False, None, []
    hub_env.faults.update(bandwidth_per_connection=None)
    hub_env.bytes_sent.clear()
    fetched = nodes.ensure_local("loras", "", ref)
    assert fetched.path.read_bytes() == data and fetched.name == "big_ink.safetensors"
    assert comfy_runtime.updates[-1] == (len(data), len(data))
    assert hub_env.bytes_sent.total() < len(data)  # resumed from the kept part


def test_missing_models_reader_knows_our_nodes_widget_order(nodes):
    """hubloader.workflows.finding reads UI-format widgets_values by position: its table must follow our INPUT_TYPES."""
    from hubloader.workflows.finding import LOADER_WIDGETS

    for node_id, cls in nodes.NODE_CLASS_MAPPINGS.items():
        inputs = cls.INPUT_TYPES()
        widgets = [
            name
            for section in ("required", "optional")
            for name, spec in inputs.get(section, {}).items()
            if isinstance(spec[0], list) or spec[0] in ("STRING", "FLOAT", "INT", "BOOLEAN")
            if not (len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("forceInput"))
        ]
        table = [name for name, _ in LOADER_WIDGETS[node_id]]
        assert widgets[: len(table)] == table, node_id


@pytest.mark.hf
def test_same_named_different_files_are_fetched_apart_and_loaded_by_their_placed_name(
    nodes, comfy, comfy_runtime, hub_env, monkeypatch
):
    monkeypatch.setattr("nodes.fetch._fetched", {})  # a fresh ComfyUI process: no earlier test's fetch
    sd15, sdxl = (safetensors_bytes(kohya_lora(), seed=s) for s in (51, 52))
    hub_env.add_hf_repo("ink/styles", {"sd15/style-0.safetensors": sd15, "sdxl/style-0.safetensors": sdxl})
    loras = Path(comfy.get_folder_paths("loras")[0])
    mine = _lora(comfy, "style-0.safetensors")  # the user's own file of that name stays as it is
    kept = mine.read_bytes()

    fetched = nodes.ensure_local("loras", "", "ink/styles/sdxl/style-0.safetensors")
    assert fetched.path == loras / "ink__styles" / "sdxl" / "style-0.safetensors"
    assert fetched.path.read_bytes() == sdxl and fetched.name == "ink__styles/sdxl/style-0.safetensors"
    assert mine.read_bytes() == kept

    url = f"{hub_env.hf_url}/ink/styles/resolve/main/sd15/style-0.safetensors"
    placed_name = "ink__styles/sd15/style-0.safetensors"
    models = [{"name": "style-0.safetensors", "url": "https://hf.co/x/y/resolve/main/style-0.safetensors"}]
    models.append({"name": placed_name, "url": url, "directory": "loras"})
    extra = {"workflow": {"nodes": [{"id": 7, "properties": {"models": models}}]}}
    assert nodes.workflow_url(extra, "7", placed_name) == url
    fetched = nodes.ensure_local("loras", placed_name, "", unique_id="7", extra_pnginfo=extra)
    assert fetched.path == loras / "ink__styles" / "sd15" / "style-0.safetensors"
    assert fetched.path.read_bytes() == sd15 and fetched.name == placed_name
    assert nodes.ensure_local("loras", placed_name, "").path == fetched.path  # now local: loaded by that name
