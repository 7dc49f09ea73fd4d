"""Install what Hubloader needs into the host's Python. Run by A1111/Forge at every start and by ComfyUI-Manager.

Idempotent and quick: it only calls pip for requirements that are missing or outside their range,
so a normal start costs a few metadata look-ups. Never upgrades what satisfies the range (hosts pin
their own versions, e.g. Forge's huggingface_hub 0.26.x).
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


def requirements(path: Path = REQUIREMENTS) -> list[tuple[str, str]]:
    """(name, specifier) pairs from a requirements file, comments and blank lines skipped."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = _REQUIREMENT.match(line)
        if line and match:
            pairs.append((match.group(1), match.group(2)))
    return pairs


def is_satisfied(name: str, specifier: str) -> bool:
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # no packaging: presence is the best we can check
        return True
    return SpecifierSet(specifier).contains(installed, prereleases=True)


def pip_install(requirement: str) -> None:
    try:
        import launch  # A1111/Forge: honours --skip-install and the host's index settings

        launch.run_pip(f'install "{requirement}"', f"Hubloader requirement: {requirement}")
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", requirement])


def main() -> int:
    missing = [f"{name}{spec}" for name, spec in requirements() if not is_satisfied(name, spec)]
    for requirement in missing:
        pip_install(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
