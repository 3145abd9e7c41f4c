"""The build spec: a YAML file validated into typed settings with clear errors.

Relative paths in a spec (sources, output, warehouse) are relative to the spec file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from filters.base import registered_filters
from flows.runners import RunnerConfig
from generators.candidates import CandidateConfig
from generators.listwise import ListwiseConfig
from generators.mixed_cot import MixedCotConfig
from generators.negatives import NegativesConfig
from generators.pointwise import PointwiseConfig
from generators.teachers import Sampling, TeacherConfig
from warehouse.errors import InputError


class SourceSpec(BaseModel):
    """One source and its domain: a local ``path`` or a hub id ``hf`` to ingest, or neither
    for the latest snapshot already ingested under ``name``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    path: str | None = None
    hf: str | None = Field(None, description="a Hugging Face hub dataset id (needs a network)")
    queries: int | None = Field(None, ge=1, description="how many queries to use (default: all)")
    candidates: CandidateConfig | None = Field(
        None, description="this source's candidate settings; fields given override the spec's")


class Pricing(BaseModel):
    """Teacher prices, for the cost a version's manifest records (USD per million tokens)."""

    model_config = ConfigDict(extra="forbid")

    prompt_usd_per_mtok: float = Field(0.0, ge=0)
    completion_usd_per_mtok: float = Field(0.0, ge=0)


class BuildSpec(BaseModel):
    """Everything a build needs; ``synthrank build SPEC`` runs it."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    output: str = "out"
    warehouse: str | None = None
    seed: int = 0
    publish: Literal["if_changed", "always"] = Field(
        "if_changed", description="scheduled runs: publish only when inputs changed, or always")
    sources: list[SourceSpec] = Field(min_length=1)
    kinds: list[Literal["pointwise", "listwise", "negatives", "mixed_cot"]] = Field(
        ["listwise"], min_length=1, description="dataset kinds this build produces")
    candidates: CandidateConfig = CandidateConfig()
    listwise: ListwiseConfig = ListwiseConfig()
    pointwise: PointwiseConfig = PointwiseConfig()
    negatives: NegativesConfig = NegativesConfig()
    mixed_cot: MixedCotConfig = MixedCotConfig()
    teacher: TeacherConfig = TeacherConfig()
    sampling: Sampling = Sampling()
    pricing: Pricing | None = Field(None, description="teacher prices; without them cost is tokens only")
    filters: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="per kind, a filter chain: [{name: ..., <parameter>: ...}]")
    runner: RunnerConfig = RunnerConfig()

    base_dir: Path = Field(Path("."), exclude=True)

    def candidates_for(self, source: SourceSpec) -> CandidateConfig:
        """The candidate settings of one source: the spec's, with the source's overrides."""
        if source.candidates is None:
            return self.candidates
        overrides = {name: getattr(source.candidates, name) for name in source.candidates.model_fields_set}
        return self.candidates.model_copy(update=overrides)

    def resolve(self, path: str) -> Path:
        """A spec path made absolute against the spec file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    @property
    def warehouse_path(self) -> Path:
        return self.resolve(self.warehouse) if self.warehouse else self.output_dir / "synthrank.duckdb"

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.output)


def load_spec(path: str | Path) -> BuildSpec:
    """Read and validate a spec file; every problem names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: spec file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a spec is a YAML mapping with at least 'dataset' and 'sources'")
    return spec_from_dict(raw, path.resolve().parent, str(path))


def spec_from_dict(raw: dict, base_dir: Path, name: str = "spec") -> BuildSpec:
    try:
        spec = BuildSpec.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise InputError(f"{name}: " + "; ".join(_describe(error) for error in exc.errors())) from None
    for index, source in enumerate(spec.sources):
        path = source.path
        if path is not None and not spec.resolve(path).exists():
            raise InputError(f"{name}: sources[{index}].path: {path} does not exist")
        if path is not None and source.hf is not None:
            raise InputError(f"{name}: sources[{index}]: give either path or hf, not both")
    _check_filters(spec, name)
    return spec


def _check_filters(spec: BuildSpec, name: str) -> None:
    """Every filter of every chain exists and takes the parameters given (data-valued ones
    are supplied at build time; see flows/stages/filtering.py)."""
    if not spec.filters:  # the registry imports every filter's libraries (scipy, ir_measures, datasketch)
        return
    known = registered_filters()
    for kind, chain in spec.filters.items():
        if kind not in spec.kinds:
            raise InputError(f"{name}: filters.{kind}: not a kind this build produces ({spec.kinds})")
        for index, item in enumerate(chain):
            where = f"{name}: filters.{kind}[{index}]"
            if item.get("name") not in known:
                raise InputError(f"{where}: unknown filter {item.get('name')!r} (known: {', '.join(sorted(known))})")
            accepted = {f.name for f in dataclasses.fields(known[item["name"]]) if f.init} | {"against_published"}
            unknown = set(item) - accepted - {"name"}
            if unknown:
                raise InputError(f"{where}: unknown parameter {sorted(unknown)[0]!r} of filter {item['name']!r}")


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown field {where!r}"
    if error["type"] == "missing":
        return f"missing field {where!r}"
    return f"{where}: {error['msg']}"
