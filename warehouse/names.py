"""Names that become paths (datasets, sources, snapshots), and the check that a written path
stays inside the folder it belongs to."""

from __future__ import annotations

import re
from pathlib import Path

from warehouse.errors import InputError

_SEGMENT = re.compile(r"[\w.-]+")
NAME_RULE = "one path segment of letters, digits, '-', '_' and '.', not '.' or '..'"


def check_name(value: str, what: str) -> str:
    """``value`` if it is one safe path segment; else an InputError naming ``what``."""
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value) or value in (".", ".."):
        raise InputError(f"{what}: {value!r} is not a valid name ({NAME_RULE})")
    return value


def inside(path: str | Path, root: str | Path) -> Path:
    """``path`` resolved, after checking that it lies inside ``root`` (symlinks followed)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise InputError(f"{path}: outside {root}; synthrank writes only inside it")
    return resolved


def check_folder(folder: str | Path, what: str) -> Path:
    """``folder`` if it is a folder or can be made one (no part of it is an existing file)."""
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise InputError(f"{what}: {part} is a file, not a folder")
            break
    return folder
