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
from generators.queries import SynthesizeConfig
from generators.teachers import Sampling, TeacherConfig
from warehouse.errors import InputError
from warehouse.sources import SourceRef
from warehouse.names import check_folder, check_name, inside


class SourceSpec(BaseModel):
    """One source and its domain: a local ``path`` or a hub id ``hf`` to ingest, or neither
    for the latest snapshot already ingested under ``name``. ``layout`` or ``columns`` read
    any Hugging Face dataset or table (see warehouse/sources.py); ``topics`` and ``qrels``
    add TREC files."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    path: str | None = None
    hf: str | None = Field(None, description="a Hugging Face hub dataset id (needs a network)")
    layout: Literal["beir", "msmarco", "squad", "triplets", "qa"] | None = None
    columns: dict[str, str] | None = Field(None, description="role -> (dotted) column path, e.g. query: question")
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    streaming: bool = False
    limit: int | None = Field(None, ge=1, description="read only the first rows of the dataset")
    topics: str | None = Field(None, description="TREC topics: TSV qid<TAB>text or <top> SGML")
    topics_field: Literal["title", "description"] = "title"
    qrels: str | None = Field(None, description="a TREC (or BEIR) qrels file")
    on_bad_record: Literal["fail", "skip"] = "fail"
    queries: int | None = Field(None, ge=1, description="how many queries to use (default: all)")
    synthesize: bool = Field(False, description="write queries for this source's passages (kind `queries`)")
    candidates: CandidateConfig | None = Field(
        None, description="this source's candidate settings; fields given override the spec's")

    def ref(self, resolve) -> SourceRef:
        """Where and how to read this source (paths made absolute with ``resolve``)."""
        local = lambda path: str(resolve(path)) if path else None  # noqa: E731
        return SourceRef(
            self.hf or local(self.path), hub=self.hf is not None, layout=self.layout, columns=self.columns,
            config=self.config, split=self.split, revision=self.revision, streaming=self.streaming,
            limit=self.limit, topics=local(self.topics), topics_field=self.topics_field,
            qrels=local(self.qrels), on_bad_record=self.on_bad_record)


class Mixture(BaseModel):
    """``queries`` in total, split over domains or source names by ``weights``."""

    model_config = ConfigDict(extra="forbid")

    queries: int = Field(ge=1)
    weights: dict[str, float] = Field(min_length=1)


class Pricing(BaseModel):
    """Teacher prices, for the cost a version's manifest records (USD per million tokens)."""

    model_config = ConfigDict(extra="forbid")

    prompt_usd_per_mtok: float = Field(0.0, ge=0)
    completion_usd_per_mtok: float = Field(0.0, ge=0)


class ReviewSpec(BaseModel):
    """Human review (``synthrank review``): with ``override: true`` the latest human judgment of
    each item, pulled from Label Studio, overrides the teacher's label in this build."""

    model_config = ConfigDict(extra="forbid")

    override: bool = False


class BuildSpec(BaseModel):
    """Everything a build needs; ``synthrank build SPEC`` runs it."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, description="the dataset's name: a folder under output")
    output: str = "out"
    warehouse: str | None = None
    seed: int = 0
    publish: Literal["if_changed", "always"] = Field(
        "if_changed", description="publish a new version only when the inputs, the code or the rows changed, "
        "or on every build (always)")
    sources: list[SourceSpec] = Field(min_length=1)
    mixture: Mixture | None = Field(None, description="N queries in total, weighted by domain or source name")
    kinds: list[Literal["queries", "pointwise", "listwise", "negatives", "mixed_cot"]] = Field(
        ["listwise"], min_length=1, description="dataset kinds this build produces")
    candidates: CandidateConfig = CandidateConfig()
    queries: SynthesizeConfig = SynthesizeConfig()
    listwise: ListwiseConfig = ListwiseConfig()
    pointwise: PointwiseConfig = PointwiseConfig()
    negatives: NegativesConfig = NegativesConfig()
    mixed_cot: MixedCotConfig = MixedCotConfig()
    teacher: TeacherConfig = TeacherConfig()
    sampling: Sampling = Sampling()
    pricing: Pricing | None = Field(None, description="teacher prices; without them cost is tokens only")
    max_failed_share: float = Field(
        0.5, ge=0, le=1, description="a build in which more than this share of teacher calls failed "
        "(or every call) fails instead of publishing")
    filters: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="per kind, a filter chain: [{name: ..., <parameter>: ...}]")
    runner: RunnerConfig = RunnerConfig()
    review: ReviewSpec = ReviewSpec()

    base_dir: Path = Field(Path("."), exclude=True)

    def candidates_for(self, source: SourceSpec) -> CandidateConfig:
        """The candidate settings of one source: the spec's, with the source's overrides."""
        config = self.candidates
        if source.candidates is not None:
            overrides = {name: getattr(source.candidates, name) for name in source.candidates.model_fields_set}
            config = config.model_copy(update=overrides)
        if config.method == "run" and config.path is not None:
            config = config.model_copy(update={"path": str(self.resolve(config.path))})
        return config

    def query_counts(self, warehouse, snapshot_ids: list[str]) -> tuple[list[int | None], dict | None]:
        """How many queries each source gives the build (None: all) and, with a mixture, the
        report of asked vs got per domain or source (generators/mixture.py)."""
        if self.mixture is None:
            return [source.queries for source in self.sources], None
        from generators.mixture import MixtureSource, allocate, available_queries

        sources = [MixtureSource(source.name, source.domain, available_queries(warehouse, sid))
                   for source, sid in zip(self.sources, snapshot_ids)]
        counts, report = allocate(self.mixture.queries, self.mixture.weights, sources)
        return counts, {"queries": self.mixture.queries, "seed": self.seed, "by": report}

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

    @property
    def dataset_dir(self) -> Path:
        """``output/dataset``, where the build publishes its exports (checked to be inside output)."""
        return inside(self.output_dir / self.dataset, self.output_dir)


def load_spec(path: str | Path) -> BuildSpec:
    """Read and validate a spec file; every problem names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: spec file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        column = f" at column {mark.column + 1}" if mark else ""
        raise InputError(f"{where}: not valid YAML ({exc.problem}{column})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a spec is a YAML mapping with at least 'dataset' and 'sources'")
    return spec_from_dict(raw, path.resolve().parent, str(path))


def spec_from_dict(raw: dict, base_dir: Path, name: str = "spec") -> BuildSpec:
    try:
        spec = BuildSpec.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise InputError(f"{name}: " + "; ".join(_describe(error) for error in exc.errors())) from None
    check_name(spec.dataset, f"{name}: dataset")
    check_folder(spec.output_dir, f"{name}: output")
    spec.dataset_dir  # inside output, also through a symlink (raises otherwise)
    check_folder(spec.warehouse_path.parent, f"{name}: warehouse")
    if spec.warehouse_path.is_dir():
        raise InputError(f"{name}: warehouse: {spec.warehouse_path} is a folder, not a DuckDB file")
    for index, source in enumerate(spec.sources):
        check_name(source.name, f"{name}: sources[{index}].name")
        path = source.path
        if path is not None and not spec.resolve(path).exists():
            raise InputError(f"{name}: sources[{index}].path: {path} does not exist")
        if path is not None and source.hf is not None:
            raise InputError(f"{name}: sources[{index}]: give either path or hf, not both")
        for field in ("topics", "qrels"):
            value = getattr(source, field)
            if value is not None and not spec.resolve(value).is_file():
                raise InputError(f"{name}: sources[{index}].{field}: {value} does not exist")
        run = spec.candidates_for(source)
        if run.method == "run" and (run.path is None or not spec.resolve(run.path).is_file()):
            raise InputError(f"{name}: sources[{index}].candidates.path: a run file is needed for method run "
                             f"({run.path or 'none given'})")
    _check_mixture(spec, name)
    synthesized = any(source.synthesize for source in spec.sources)
    if synthesized != ("queries" in spec.kinds):
        raise InputError(f"{name}: kinds: the `queries` kind runs for sources with `synthesize: true`; "
                         + ("add it to kinds" if synthesized else "no source has synthesize: true"))
    _check_filters(spec, name)
    return spec


def _check_mixture(spec: BuildSpec, name: str) -> None:
    """Mixture weights name domains or sources of this spec, and no source also sets ``queries``."""
    if spec.mixture is None:
        return
    known = {s.domain for s in spec.sources} | {s.name for s in spec.sources}
    for key, weight in spec.mixture.weights.items():
        if key not in known:
            raise InputError(f"{name}: mixture.weights.{key}: no source has this domain or name "
                             f"(domains: {', '.join(sorted({s.domain for s in spec.sources}))})")
        if weight < 0:
            raise InputError(f"{name}: mixture.weights.{key}: a weight must be >= 0")
    if sum(spec.mixture.weights.values()) <= 0:
        raise InputError(f"{name}: mixture.weights: at least one weight must be > 0")
    for index, source in enumerate(spec.sources):
        if source.queries is not None:
            raise InputError(f"{name}: sources[{index}].queries: the mixture sets how many queries each source "
                             "gives; drop one of them")


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
