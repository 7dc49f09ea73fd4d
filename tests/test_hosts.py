from __future__ import annotations

from types import SimpleNamespace

import pytest

from hubloader.core import settings as config
from hubloader.core.errors import ConfigError
from hubloader.core.folders import (
    a1111_install,
    comfyui_install,
    folder_for,
    kind_of,
    models_root,
    safe_filename,
    standalone_folders,
)
from hubloader.core.metadata import ModelType


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("../../.bashrc", "bashrc.safetensors"),
        ("..\\..\\Windows\\evil.ckpt", "evil.ckpt"),
        ("a/b/c.safetensors", "c.safetensors"),
        ("CON.safetensors", "_CON.safetensors"),
        ("Good Model v1.0.SafeTensors", "Good Model v1.0.safetensors"),
        ("..", "model.safetensors"),
        ("", "model.safetensors"),
        ("weird\x00name.pt", "weird_name.pt"),
        ("model.v2", "model.v2.safetensors"),
        ('a<b>c:"d|e?f*.safetensors', "a_b_c__d_e_f.safetensors"),
    ],
)
def test_safe_filename(hostile, expected):
    assert safe_filename(hostile) == expected


def test_safe_filename_caps_length_without_breaking_utf8():
    name = safe_filename("é" * 300 + ".safetensors")
    assert name.endswith(".safetensors") and len(name.encode()) <= 200
    name.encode("utf-8")


def test_kind_names():
    assert kind_of(ModelType.LORA) == kind_of(ModelType.LYCORIS) == "loras"
    assert kind_of("unet") == "diffusion_models"
    assert kind_of("clip") == "text_encoders"
    assert kind_of("checkpoint") == "checkpoints"
    with pytest.raises(ConfigError, match="Unknown model folder kind"):
        kind_of("nonsense")


def test_standalone_layout_and_setting(tmp_path, isolated_home):
    assert models_root() == isolated_home / "models"
    assert folder_for(ModelType.LORA) == isolated_home / "models" / "loras"
    config.save_settings({"models_dir": str(tmp_path / "mine")})
    assert folder_for(ModelType.VAE) == tmp_path / "mine" / "vae"
    assert folder_for(ModelType.BASE_MODEL, root=tmp_path / "x") == tmp_path / "x" / "checkpoints"
    assert standalone_folders(tmp_path).target("embeddings") == tmp_path / "embeddings"


def test_comfyui_install_reads_extra_model_paths(tmp_path):
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "folder_paths.py").write_text("")
    (comfy / "extra_model_paths.yaml").write_text(
        "a111:\n"
        "    base_path: ../webui\n"
        "    checkpoints: models/Stable-diffusion\n"
        "    loras: |\n"
        "        models/Lora\n"
        "        models/LyCORIS\n"
        "mine:\n"
        "    base_path: /data\n"
        "    is_default: true\n"
        "    unet: big/unet\n"
    )
    folders = comfyui_install(comfy)
    assert folders.dirs("loras") == [
        comfy / "models" / "loras",
        tmp_path / "webui" / "models" / "Lora",
        tmp_path / "webui" / "models" / "LyCORIS",
    ]
    assert folders.target("diffusion_models").as_posix() == "/data/big/unet"
    assert comfy / "models" / "clip" in folders.dirs(ModelType.TEXT_ENCODER)


def test_comfyui_install_rejects_other_folders(tmp_path):
    with pytest.raises(ConfigError, match="not a ComfyUI folder"):
        comfyui_install(tmp_path)


def test_a1111_layout_and_overrides(tmp_path):
    folders = a1111_install(tmp_path)
    assert folders.target(ModelType.BASE_MODEL) == tmp_path / "models" / "Stable-diffusion"
    assert folders.target(ModelType.EMBEDDING) == tmp_path / "embeddings"
    assert folders.dirs(ModelType.LORA) == [tmp_path / "models" / "Lora", tmp_path / "models" / "LyCORIS"]
    opts = SimpleNamespace(lora_dir=str(tmp_path / "elsewhere"), ckpt_dir=None)
    assert a1111_install(tmp_path, opts).target("loras") == tmp_path / "elsewhere"


def test_existing_dirs_lists_each_folder_on_disk_once(tmp_path):
    folders = a1111_install(tmp_path)
    assert folders.existing_dirs() == []
    (tmp_path / "models" / "Stable-diffusion").mkdir(parents=True)  # checkpoints and diffusion models share it
    (tmp_path / "models" / "Lora").mkdir()
    assert folders.existing_dirs() == [tmp_path / "models" / "Stable-diffusion", tmp_path / "models" / "Lora"]


def test_a_malformed_extra_model_paths_yaml_is_one_line_naming_the_file_and_line(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    (comfy / "folder_paths.py").write_text("")
    (comfy / "extra_model_paths.yaml").write_text("a111:\n    base_path: /x\n  loras: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        comfyui_install(comfy)
    message = str(caught.value)
    assert "extra_model_paths.yaml" in message and "line 3" in message and "\n" not in message
