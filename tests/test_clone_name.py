"""A clone is usually a folder named ``hubloader``: the repository root must then never shadow the hub layer.

Each case runs in a fresh interpreter over a folder named ``hubloader`` that is this checkout (a link), so the
tests hold whatever the checkout itself is called: the parent of the clone on ``sys.path`` (a script, a test
runner, a host that extends ``sys.path``), ComfyUI registering the pack under its folder's name, ComfyUI's
path-derived name with ``custom_nodes`` on ``sys.path``, and the A1111 glue's own import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "tests" / "comfy_stub"
HEAVY = ("torch", "gradio", "huggingface_hub", "aiohttp", "requests", "sqlite3", "numpy")


@pytest.fixture
def custom_nodes(tmp_path: Path) -> Path:
    """A ``custom_nodes`` folder holding this checkout as ``custom_nodes/hubloader``."""
    folder = tmp_path / "custom_nodes"
    folder.mkdir()
    (folder / "hubloader").symlink_to(ROOT, target_is_directory=True)
    return folder


def _run(code: str, cwd: Path) -> dict:
    """Run ``code`` in a new interpreter (no inherited PYTHONPATH) and read the JSON it prints last."""
    env = {"PATH": "/usr/bin:/bin", "HUBLOADER_HOME": str(cwd / "home")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_HUB_LAYER_CHECK = f"""
import hubloader, json, sys
heavy = [m for m in {HEAVY!r} if m in sys.modules]
from hubloader.registry import ModelRegistry
from hubloader.core.metadata import ModelType
print(json.dumps({{
    "version": hubloader.__version__,
    "heavy_at_import": heavy,
    "registry_is_public": hubloader.ModelRegistry is ModelRegistry,
    "lora": ModelType.LORA.value,
    "all_resolve": all(hasattr(hubloader, n) for n in hubloader.__all__),
}}))
"""


def _assert_hub_layer(result: dict) -> None:
    assert result["version"]
    assert result["heavy_at_import"] == []
    assert result["registry_is_public"] is True
    assert result["lora"] == "lora"
    assert result["all_resolve"] is True


def test_the_folder_above_a_clone_on_sys_path_still_imports_the_hub_layer(custom_nodes: Path):
    code = f"import sys; sys.path.insert(0, {str(custom_nodes)!r})\n" + _HUB_LAYER_CHECK
    _assert_hub_layer(_run(code, custom_nodes.parent))


_COMFY_LOAD = """
import importlib.util, json, sys
sys.path.insert(0, {stub!r})
import folder_paths
folder_paths.setup(__import__("pathlib").Path({base!r}))
{extra}
path = {pack!r}
spec = importlib.util.spec_from_file_location({name!r}, path + "/__init__.py")
module = importlib.util.module_from_spec(spec)
sys.modules[{name!r}] = module
spec.loader.exec_module(module)
heavy = [m for m in {heavy!r} if m in sys.modules]
import hubloader
from hubloader.core.folders import standalone_folders
print(json.dumps({{
    "nodes": sorted(getattr(module, "NODE_CLASS_MAPPINGS")),
    "names": getattr(module, "NODE_DISPLAY_NAME_MAPPINGS")["HubloaderLoraLoader"],
    "web": getattr(module, "WEB_DIRECTORY"),
    "heavy": heavy,
    "scans": folder_paths.scans,
    "hub_version": hubloader.__version__,
    "hub_registry": hubloader.ModelRegistry.__module__,
}}))
"""


@pytest.mark.parametrize(
    "name, on_path",
    [
        ("hubloader", False),  # ComfyUI before 0.3.4x: a pack is sys.modules[<folder name>]
        ("hubloader", True),
        ("{pack_path}", False),  # newer ComfyUI: a path-derived name
        ("{pack_path}", True),  # ... with custom_nodes on sys.path (a launcher, a manager)
    ],
)
def test_comfyui_loads_a_pack_folder_named_hubloader(custom_nodes: Path, name: str, on_path: bool):
    pack = str(custom_nodes / "hubloader")
    code = _COMFY_LOAD.format(
        stub=str(STUB),
        base=str(custom_nodes.parent / "comfy"),
        extra=f"sys.path.append({str(custom_nodes)!r})" if on_path else "",
        pack=pack,
        name=name.format(pack_path=pack.replace(".", "_x_")),
        heavy=HEAVY,
    )
    result = _run(code, custom_nodes.parent)
    assert {"HubloaderLoraLoader", "HubloaderCheckpointLoader"} <= set(result["nodes"])
    assert result["names"] == "Hub LoRA Loader"
    assert (ROOT / result["web"] / "hubloader.js").is_file()
    assert result["heavy"] == [] and result["scans"] == 0
    assert result["hub_version"] and result["hub_registry"] == "hubloader.registry"


def test_the_a1111_glue_imports_the_hub_layer_from_an_extension_named_hubloader(custom_nodes: Path):
    """A1111 puts the extension root on sys.path while it loads scripts/: ``import hubloader`` is the layer."""
    code = f"import sys; sys.path.insert(0, {str(custom_nodes / 'hubloader')!r})\n" + _HUB_LAYER_CHECK
    _assert_hub_layer(_run(code, custom_nodes.parent))


_LONE_MODULE_LOAD = """
import importlib.machinery, importlib.util, json, sys
spec = importlib.machinery.PathFinder.find_spec("__init__", [{pack!r}])
module = importlib.util.module_from_spec(spec)
sys.modules["__init__"] = module
spec.loader.exec_module(module)
print(json.dumps({{
    "package": module.__package__,
    "web": module.WEB_DIRECTORY,
    "heavy": [m for m in {heavy!r} if m in sys.modules],
}}))
"""


def test_a_test_runner_may_import_the_root_of_a_clone_with_no_python_name_as_a_lone_module(tmp_path: Path):
    """pytest imports the rootdir's ``__init__.py`` as a plain module named ``__init__`` when the folder's name
    is no Python name (a ``hubloader-main`` zip, a ``wt-x`` worktree): no package, so no relative import."""
    pack = tmp_path / "hubloader-main"
    pack.symlink_to(ROOT, target_is_directory=True)
    result = _run(_LONE_MODULE_LOAD.format(pack=str(pack), heavy=HEAVY), tmp_path)
    assert result["package"] == ""
    assert (ROOT / result["web"] / "hubloader.js").is_file()
    assert result["heavy"] == []
