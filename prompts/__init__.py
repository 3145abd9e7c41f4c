"""Prompt templates kept as files, each with a name and a content-hash version.

A template file ``prompts/<name>.yaml`` has ``system`` and ``user`` strings whose
``{placeholders}`` are filled by :meth:`Prompt.render`. The version is a hash of the
file's bytes, so any edit to a prompt changes the version recorded on every row.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

PROMPT_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Prompt:
    """A named, versioned chat template with a system and a user part."""

    name: str
    version: str
    system: str
    user: str

    def placeholders(self) -> frozenset[str]:
        """Names of the ``{fields}`` the template expects."""
        return self._placeholders

    @cached_property
    def _placeholders(self) -> frozenset[str]:  # parsed once: render() checks them on every call
        formatter = string.Formatter()
        return frozenset(
            field
            for part in (self.system, self.user)
            for _, field, _, _ in formatter.parse(part)
            if field
        )

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with every placeholder filled; a missing value is an error."""
        missing = self.placeholders() - values.keys()
        if missing:
            raise KeyError(f"prompt {self.name!r} needs values for {sorted(missing)}")
        messages = []
        if self.system.strip():
            messages.append({"role": "system", "content": self.system.format_map(values).strip()})
        messages.append({"role": "user", "content": self.user.format_map(values).strip()})
        return messages


def load_prompt(name: str, directory: Path = PROMPT_DIR) -> Prompt:
    """Load ``<directory>/<name>.yaml``; its version is the first 12 hex digits of its sha256."""
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise FileNotFoundError(f"no prompt named {name!r} in {directory} (known: {known})")
    raw = path.read_bytes()
    spec = yaml.safe_load(raw)
    unknown = set(spec) - {"system", "user", "description"}
    if unknown or "user" not in spec:
        raise ValueError(f"{path}: expected keys system/user/description, got {sorted(spec)}")
    return Prompt(
        name=name,
        version=hashlib.sha256(raw).hexdigest()[:12],
        system=spec.get("system", ""),
        user=spec["user"],
    )

