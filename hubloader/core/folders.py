"""Where each kind of model lives: ComfyUI's folders, A1111/Forge's, or a standalone models folder.

Folder kinds are ComfyUI's names ("checkpoints", "loras", …) because they are the most complete
vocabulary; :data:`KIND_BY_TYPE` maps our :class:`ModelType` onto them. A :class:`ModelFolders`
answers "which directories hold kind K?" — the first is where downloads go, as in ComfyUI's
``folder_paths.get_folder_paths(kind)[0]``.

Host detection is lazy and never imports a host: we only look at what is already in ``sys.modules``.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

from hubloader.core.errors import ConfigError
from hubloader.core.metadata import MODEL_EXTENSIONS, ModelType
from hubloader.core.settings import hubloader_home, load_settings

KIND_BY_TYPE: dict[ModelType, str] = {
    ModelType.BASE_MODEL: "checkpoints",
    ModelType.LORA: "loras",
    ModelType.LYCORIS: "loras",
    ModelType.EMBEDDING: "embeddings",
    ModelType.VAE: "vae",
    ModelType.CONTROLNET: "controlnet",
    ModelType.UPSCALER: "upscale_models",
    ModelType.TEXT_ENCODER: "text_encoders",
    ModelType.DIFFUSION_MODEL: "diffusion_models",
    ModelType.HYPERNETWORK: "hypernetworks",
    ModelType.CLIP_VISION: "clip_vision",
    ModelType.OTHER: "other",
}
# ComfyUI kinds no ModelType maps to; still valid folders when a workflow names them.
COMFYUI_ONLY_KINDS = ("style_models", "gligen", "photomaker", "model_patches", "vae_approx", "audio_encoders")
KINDS: tuple[str, ...] = tuple(dict.fromkeys(KIND_BY_TYPE.values())) + COMFYUI_ONLY_KINDS
# ComfyUI's legacy folder names, still found in workflows and extra_model_paths.yaml.
LEGACY_KINDS = {"unet": "diffusion_models", "clip": "text_encoders"}

#: ComfyUI loader inputs whose name says the folder kind on any node (ours name inputs like the built-ins).
KIND_BY_INPUT: dict[str, str] = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "control_net_name": "controlnet",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "clip_vision_name": "clip_vision",
    "upscale_model_name": "upscale_models",
    "embedding_name": "embeddings",
    "hypernetwork_name": "hypernetworks",
}

# A1111/Forge: kind -> (directory relative to the models dir, or to the data dir when marked, cmd_opts attribute).
A1111_LAYOUT: dict[str, tuple[str, str | None]] = {
    "checkpoints": ("models/Stable-diffusion", "ckpt_dir"),
    "loras": ("models/Lora", "lora_dir"),
    "vae": ("models/VAE", "vae_dir"),
    "embeddings": ("embeddings", "embeddings_dir"),
    "hypernetworks": ("models/hypernetworks", "hypernetwork_dir"),
    "controlnet": ("models/ControlNet", "controlnet_dir"),
    "upscale_models": ("models/ESRGAN", "esrgan_models_path"),
    "text_encoders": ("models/text_encoder", "text_encoder_dir"),
    "diffusion_models": ("models/Stable-diffusion", None),
    "clip_vision": ("models/clip_vision", None),
    "other": ("models/other", None),
}


def kind_of(value: ModelType | str) -> str:
    """The folder kind for a ModelType, a kind name, or a legacy kind name."""
    if isinstance(value, ModelType):
        return KIND_BY_TYPE[value]
    text = str(value).strip().lower()
    text = LEGACY_KINDS.get(text, text)
    if text in KINDS:
        return text
    try:
        return KIND_BY_TYPE[ModelType.parse(text)]
    except ValueError:
        raise ConfigError(f"Unknown model folder kind {value!r}.", hint=f"Use one of: {', '.join(KINDS)}.") from None


def type_of_kind(kind: str) -> ModelType | None:
    """The ModelType whose files a folder kind holds (LORA for "loras"); None for a ComfyUI-only kind."""
    return next((t for t, k in KIND_BY_TYPE.items() if k == kind and t is not ModelType.LYCORIS), None)


class ModelFolders:
    """A plain mapping kind -> directories; the first directory of a kind receives downloads."""

    def __init__(self, dirs: dict[str, list[Path]], name: str = "standalone") -> None:
        self.name = name
        self._dirs = {kind_of(k): [Path(p) for p in v] for k, v in dirs.items()}

    def dirs(self, kind: ModelType | str) -> list[Path]:
        return list(self._dirs.get(kind_of(kind), []))

    def target(self, kind: ModelType | str) -> Path:
        """Where a new file of this kind is written."""
        dirs = self.dirs(kind)
        if not dirs:
            raise ConfigError(f"No folder is configured for {kind_of(kind)} models in {self.name}.")
        return dirs[0]

    def kinds(self) -> list[str]:
        return list(self._dirs)

    def existing_dirs(self) -> list[Path]:
        """Every folder of every kind that exists on disk, each once (kinds may share one, as A1111's
        checkpoints and diffusion models do): what a library scan or a push reads."""
        return list(dict.fromkeys(d for dirs in self._dirs.values() for d in dirs if d.is_dir()))

    def __repr__(self) -> str:
        return f"ModelFolders({self.name!r}, {len(self._dirs)} kinds)"


def standalone_folders(root: Path) -> ModelFolders:
    """``<root>/<kind>`` for every kind: the ComfyUI layout, which most tools understand."""
    root = Path(root).expanduser()
    return ModelFolders({kind: [root / kind] for kind in KINDS}, name=f"models folder {root}")


def comfyui_install(path: Path) -> ModelFolders:
    """A ComfyUI install given by path: its ``models/`` folders plus its ``extra_model_paths.yaml``."""
    path = Path(path).expanduser()
    if not (path / "folder_paths.py").is_file():
        raise ConfigError(f"{path} is not a ComfyUI folder (no folder_paths.py).", hint="Give the ComfyUI root folder.")
    dirs: dict[str, list[Path]] = {kind: [path / "models" / kind] for kind in KINDS}
    dirs["text_encoders"].append(path / "models" / "clip")
    dirs["diffusion_models"].append(path / "models" / "unet")
    for kind, extra, is_default in _extra_model_paths(path / "extra_model_paths.yaml"):
        if kind in dirs:
            dirs[kind].insert(0, extra) if is_default else dirs[kind].append(extra)
    return ModelFolders(dirs, name=f"ComfyUI at {path}")


def _extra_model_paths(yaml_path: Path) -> list[tuple[str, Path, bool]]:
    """(kind, dir, is_default) entries of an extra_model_paths.yaml, as ComfyUI's own loader reads them."""
    if not yaml_path.is_file():
        return []
    try:
        import yaml
    except ImportError as exc:
        raise ConfigError(
            f"{yaml_path} needs PyYAML to be read.", hint="Install it with `pip install pyyaml`."
        ) from exc
    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(
            f"{yaml_path} is not valid YAML{where}: {problem}.",
            hint="Fix that line (ComfyUI cannot read the file either), then try again.",
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{yaml_path} is not a mapping of sections.", hint="See ComfyUI's extra_model_paths.yaml.example."
        )
    entries = []
    for section in config.values():
        if not isinstance(section, dict):
            continue
        base = Path(os.path.expandvars(os.path.expanduser(str(section.get("base_path", "")))))
        if not base.is_absolute():
            base = yaml_path.parent / base
        is_default = bool(section.get("is_default", False))
        for key, value in section.items():
            if key in ("base_path", "is_default") or value is None:
                continue
            kind = LEGACY_KINDS.get(str(key), str(key))
            for line in str(value).splitlines():
                if line.strip():
                    entries.append((kind, Path(os.path.normpath(base / line.strip())), is_default))
    return entries


def a1111_install(path: Path, cmd_opts: Any = None) -> ModelFolders:
    """An A1111/Forge install given by path (or the running one, with its ``cmd_opts`` overrides)."""
    path = Path(path).expanduser()
    models_dir = Path(getattr(cmd_opts, "models_dir", None) or path / "models")
    dirs = {}
    for kind, (relative, option) in A1111_LAYOUT.items():
        override = getattr(cmd_opts, option, None) if option else None
        default = path / relative if not relative.startswith("models/") else models_dir / relative.split("/", 1)[1]
        dirs[kind] = [Path(override) if override else default]
    dirs["loras"].append(models_dir / "LyCORIS")
    return ModelFolders(dirs, name=f"A1111 at {path}")


def _running_comfyui() -> ModelFolders | None:
    folder_paths = sys.modules.get("folder_paths")
    if folder_paths is None or not hasattr(folder_paths, "get_folder_paths"):
        return None
    dirs: dict[str, list[Path]] = {}
    for kind in KINDS:
        try:
            dirs[kind] = [Path(p) for p in folder_paths.get_folder_paths(kind)]
        except KeyError:
            dirs[kind] = [Path(folder_paths.models_dir) / kind]
    return ModelFolders(dirs, name="this ComfyUI")


def _running_a1111() -> ModelFolders | None:
    shared, paths = sys.modules.get("modules.shared"), sys.modules.get("modules.paths")
    if shared is None or paths is None:
        return None
    return a1111_install(Path(paths.data_path), getattr(shared, "cmd_opts", None))


def models_root() -> Path:
    """The standalone models folder: the ``models_dir`` setting, else ``<HUBLOADER_HOME>/models``."""
    configured = load_settings().get("models_dir")
    return Path(configured).expanduser() if configured else hubloader_home() / "models"


def active_folders() -> ModelFolders:
    """The folders of the host we run inside, else the standalone models folder."""
    return _running_comfyui() or _running_a1111() or standalone_folders(models_root())


def folder_for(model_type: ModelType | str, *, root: Path | None = None) -> Path:
    """Where a new model of this type goes: ``root``'s layout if given, else the active host's."""
    folders = standalone_folders(root) if root is not None else active_folders()
    return folders.target(model_type)


_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
MAX_NAME_BYTES = 200
KEPT_EXTENSIONS = MODEL_EXTENSIONS | {
    ".pt2",
    ".pkl",
    ".yaml",
    ".yml",
    ".json",
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".zip",
}


def safe_filename(name: str, *, default_ext: str = ".safetensors") -> str:
    """A file name that is only a name: no directories, no ``..``, no reserved or hidden names.

    Server-sent names (Content-Disposition, API file names) are untrusted: a hostile
    ``../../.bashrc`` becomes ``bashrc.safetensors``, never a path. Only known extensions are kept,
    so ``model.v2`` becomes ``model.v2.safetensors``.
    """
    text = unicodedata.normalize("NFC", str(name or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE_CHARS.sub("_", text).strip().strip(".").strip()
    stem, ext = os.path.splitext(text)
    if ext.lower() not in KEPT_EXTENSIONS:
        stem, ext = text, default_ext
    stem = stem.strip(" ._") or "model"
    if _WINDOWS_RESERVED.match(stem):
        stem = f"_{stem}"
    encoded = stem.encode("utf-8")[: MAX_NAME_BYTES - len(ext.encode("utf-8"))]
    return encoded.decode("utf-8", "ignore") + ext.lower()


def looks_like_path(text: str) -> bool:
    """Whether ``text`` is written as a local file path (absolute, home- or dot-relative, a drive, or an
    existing file), so it is never read as a repository id."""
    text = text.strip()
    drive = len(text) > 2 and text[0].isalpha() and text[1] == ":" and text[2] in "/\\"
    return text.startswith(("/", "~", "./", "../", ".\\", "\\")) or drive or os.path.isfile(text)
