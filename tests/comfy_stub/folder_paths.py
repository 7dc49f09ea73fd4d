"""A ``folder_paths`` stand-in for unit tests: the same functions as ComfyUI's module, over real folders.

Only what our nodes and routes call. ``setup(base)`` makes ``<base>/models/<kind>`` folders; the
real ComfyUI module is used by tests/test_comfyui_realhost.py.
"""

from __future__ import annotations

import os
from pathlib import Path

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
KINDS = (
    "checkpoints",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "embeddings",
    "controlnet",
    "upscale_models",
    "hypernetworks",
)

base_path = ""
models_dir = ""
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}
filename_list_cache: dict[str, tuple[list[str], dict[str, float], float]] = {}
scans = 0  # how many real folder scans happened (tests check the import does none)


def setup(base: Path) -> None:
    global base_path, models_dir
    base_path = str(base)
    models_dir = str(Path(base) / "models")
    folder_names_and_paths.clear()
    filename_list_cache.clear()
    for kind in KINDS:
        folder = Path(models_dir) / kind
        folder.mkdir(parents=True, exist_ok=True)
        folder_names_and_paths[kind] = ([str(folder)], set(supported_pt_extensions))
    folder_names_and_paths["custom_nodes"] = ([str(Path(base) / "custom_nodes")], set())


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


def get_folder_paths(folder_name: str) -> list[str]:
    return folder_names_and_paths[map_legacy(folder_name)][0][:]


def get_filename_list(folder_name: str) -> list[str]:
    global scans
    folder_name = map_legacy(folder_name)
    dirs, extensions = folder_names_and_paths[folder_name]
    mtimes = {d: os.path.getmtime(d) for d in dirs if os.path.isdir(d)}
    cached = filename_list_cache.get(folder_name)
    if cached is not None and cached[1] == mtimes:
        return list(cached[0])
    scans += 1
    found: set[str] = set()
    for d in dirs:
        for root, subdirs, files in os.walk(d, followlinks=True):
            subdirs[:] = [s for s in subdirs if s != ".git"]
            for name in files:
                if not extensions or os.path.splitext(name)[1].lower() in extensions:
                    found.add(os.path.relpath(os.path.join(root, name), d))
    result = sorted(found)
    filename_list_cache[folder_name] = (result, mtimes, 0.0)
    return list(result)


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for d in folder_names_and_paths[folder_name][0]:
        full = os.path.join(d, filename)
        if os.path.isfile(full):
            return full
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full = get_full_path(folder_name, filename)
    if full is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full
