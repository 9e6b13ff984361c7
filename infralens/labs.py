"""Where the labs live and how a lab is named.

A lab is a folder name ``labNN_slug`` that appears under ``checks/`` (its checks), ``exercises/``
(the starters and the reading guide) and ``solutions/`` (the references). Labs are discovered
from ``checks/``, so adding a lab needs no registry edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

LAB_FOLDER = re.compile(r"^lab(\d{2})_[a-z0-9_]+$")
CODE_TREES = ("exercises", "solutions")
# The whole track, so that a lab missing from a checkout (a release of some labs, an old clone)
# is named as such rather than as an unknown name.
TRACK = {
    1: ("lab01_memory_ledger", "memory ledger"),
    2: ("lab02_kv_cache", "KV cache"),
    3: ("lab03_weight_quant", "weight quantization"),
    4: ("lab04_block_formats", "block formats"),
    5: ("lab05_activation_quant", "activation quantization"),
    6: ("lab06_kv_quant", "KV-cache quantization"),
    7: ("lab07_quality_risk", "quality risk"),
    8: ("lab08_kernels", "kernels"),
    9: ("lab09_decode_roofline", "decode roofline"),
    10: ("lab10_quantization_plan", "quantization plan"),
}


@dataclass(frozen=True)
class Lab:
    """One lab of the track, e.g. ``Lab(number=10, folder="lab10_quantization_plan")``."""

    number: int
    folder: str

    @property
    def short(self) -> str:
        """``"lab10"``: the short name accepted everywhere a lab is asked for."""
        return f"lab{self.number:02d}"

    @property
    def title(self) -> str:
        """``"quantization plan"`` for ``lab10_quantization_plan``."""
        return self.folder.split("_", 1)[1].replace("_", " ")


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the cwd) with ``checks/`` and ``exercises/``.

    Raises ``FileNotFoundError`` naming where it looked when there is none.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "checks").is_dir() and (folder / "exercises").is_dir():
            return folder
    raise FileNotFoundError(
        f"no InfraLens Katas checkout at or above {here}: expected a folder holding "
        "checks/ and exercises/. Run the command from inside your clone."
    )


def discover_labs(repo_root: Path) -> list[Lab]:
    """Every lab that has a ``checks/labNN_slug/`` folder, in track order."""
    checks = repo_root / "checks"
    labs = [
        Lab(int(match.group(1)), path.name)
        for path in checks.iterdir()
        if path.is_dir() and (match := LAB_FOLDER.match(path.name))
    ]
    return sorted(labs, key=lambda lab: lab.number)


def lab_of_path(path: Path, repo_root: Path) -> Lab | None:
    """The lab a file under ``checks/`` belongs to, or None for files outside a lab folder."""
    try:
        parts = path.resolve().relative_to((repo_root / "checks").resolve()).parts
    except ValueError:
        return None
    if parts and (match := LAB_FOLDER.match(parts[0])):
        return Lab(int(match.group(1)), parts[0])
    return None


def resolve_lab(name: str, labs: list[Lab]) -> Lab:
    """Accept ``"10"``, ``"lab10"`` or ``"lab10_quantization_plan"``; raise ``ValueError`` listing the labs otherwise."""
    wanted = name.strip().lower()
    for lab in labs:
        if wanted in _names(lab.number, lab.folder):
            return lab
    known = ", ".join(lab.short for lab in labs) or "none"
    for number, (folder, title) in TRACK.items():
        if wanted in _names(number, folder):
            raise ValueError(f"Lab {number:02d} ({title}) is part of the track but not in this checkout. The labs here are {known}")
    raise ValueError(f"unknown lab {name!r}: the labs here are {known} (give a number like lab10 or a folder name)")


def _names(number: int, folder: str) -> tuple[str, ...]:
    return folder, f"lab{number:02d}", str(number), f"{number:02d}"


def checks_for(path: Path, repo_root: Path) -> Path | None:
    """Where the checks of a learner path live: ``exercises/lab02_kv_cache[/kv_cache.py]`` -> ``checks/lab02_kv_cache``.

    ``exercises/`` or ``solutions/`` itself maps to ``checks/``; a path outside those trees to None.
    """
    repo_root = repo_root.resolve()
    try:
        parts = path.resolve().relative_to(repo_root).parts
    except ValueError:
        return None
    if not parts or parts[0] not in CODE_TREES:
        return None
    if len(parts) == 1:
        return repo_root / "checks"
    return repo_root / "checks" / parts[1] if LAB_FOLDER.match(parts[1]) else None
