"""Filter protocol, chain runner and registry (shaped after datatrove's `BaseFilter`).

A filter is a small dataclass with one method, `check(row) -> Verdict`. Filters that judge
a row against the other rows (dedup, agreement across samples) override `apply(rows)`.
`run_chain` passes rows through filters in order; a row rejected by one filter is not shown
to later ones, and every rejection and flag is recorded with the filter, reason and score.

A verdict that keeps a row but carries a reason is a *flag*: the row stays data and the
flag is reported (e.g. a passage that looks like a prompt injection).

Chains are declared as a list of specs, e.g. from YAML::

    - {name: consistency_ndcg, alpha: 0.4}
    - {name: minhash_dedup, threshold: 0.8}

`build_chain(specs)` builds them; `describe_chain(filters)` gives back the same shape with
every parameter (defaults included) for the version manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from filters.text import Row

_REGISTRY: dict[str, type[Filter]] = {}


@dataclass(frozen=True)
class Verdict:
    """keep or drop; `reason` is required to drop, and on a kept row marks a flag."""

    keep: bool
    reason: str | None = None
    score: float | None = None

    def __post_init__(self) -> None:
        if not self.keep and not self.reason:
            raise ValueError("a rejecting Verdict needs a reason")

    @property
    def flagged(self) -> bool:
        return self.keep and self.reason is not None


KEEP = Verdict(True)


@dataclass(frozen=True)
class Rejection:
    """A row a filter removed."""

    row: Row
    filter: str
    reason: str
    score: float | None


@dataclass(frozen=True)
class Flag:
    """A row a filter kept but flagged (it stays in the dataset and is reported)."""

    row: Row
    filter: str
    reason: str
    score: float | None


@dataclass
class ChainResult:
    """Outcome of `run_chain`.

    kept: surviving rows, in input order. verdicts: parallel to `kept`, each row's verdict
    from every step (by step label), so scores such as NDCG can go on the row's lineage.
    rejected / flagged: one record per removed / flagged row. steps: per-step counts and
    parameters, ready for the version manifest.
    """

    kept: list[Row]
    verdicts: list[dict[str, Verdict]]
    rejected: list[Rejection]
    flagged: list[Flag]
    steps: list[dict[str, Any]]


class Filter:
    """Base class. Subclasses are dataclasses whose fields are their parameters."""

    name: ClassVar[str] = ""

    def check(self, row: Row) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__} must implement check() or apply()")

    def apply(self, rows: Sequence[Row]) -> Iterator[tuple[Row, Verdict]]:
        """Yield every input row once, in input order, with its verdict."""
        for row in rows:
            yield row, self.check(row)

    def params(self) -> dict[str, Any]:
        """Every parameter with its value (callables by name), for the version manifest."""
        return {f.name: _manifest_value(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}


def _manifest_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _manifest_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_manifest_value(v) for v in value]
    if hasattr(value, "manifest"):
        return value.manifest()
    if callable(value):
        return getattr(value, "__qualname__", repr(value))
    return repr(value)


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: make a filter buildable by its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"filter name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered_filters() -> dict[str, type[Filter]]:
    _load_builtin_filters()
    return dict(_REGISTRY)


def build_filter(name: str, **params: Any) -> Filter:
    """Build a registered filter; an unknown name or parameter is a ValueError naming it."""
    known = registered_filters()
    if name not in known:
        raise ValueError(f"unknown filter {name!r}; known filters: {', '.join(sorted(known))}")
    cls = known[name]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    for param in params:
        if param not in accepted:
            raise ValueError(f"filter {name!r}: unknown parameter {param!r}; accepted: {', '.join(sorted(accepted))}")
    missing = [f.name for f in dataclasses.fields(cls) if f.init and _is_required(f) and f.name not in params]
    if missing:
        raise ValueError(f"filter {name!r}: missing required parameter {missing[0]!r}")
    return cls(**params)


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def build_chain(specs: Iterable[Mapping[str, Any]]) -> list[Filter]:
    """Build filters from specs like `[{"name": "minhash_dedup", "threshold": 0.8}, ...]`."""
    chain = []
    for position, spec in enumerate(specs):
        if "name" not in spec:
            raise ValueError(f"filter spec #{position} has no 'name': {dict(spec)!r}")
        params = {k: v for k, v in spec.items() if k != "name"}
        chain.append(build_filter(spec["name"], **params))
    return chain


def describe_chain(filters: Sequence[Filter]) -> list[dict[str, Any]]:
    """The chain as specs with every parameter, defaults included (for the manifest).

    Data-valued parameters (dedup `seen`, injection `passages`, contamination `eval_sets`,
    callables such as `embed` and `judge`) are summarised, not stored: pass them again when
    rebuilding a chain from this description.
    """
    return [{"name": f.name, **f.params()} for f in filters]


def step_labels(filters: Sequence[Filter]) -> list[str]:
    """Unique labels for the steps: the filter name, with `#2`, `#3` on repeats."""
    seen: dict[str, int] = {}
    labels = []
    for f in filters:
        seen[f.name] = seen.get(f.name, 0) + 1
        labels.append(f.name if seen[f.name] == 1 else f"{f.name}#{seen[f.name]}")
    return labels


def run_chain(filters: Sequence[Filter], rows: Iterable[Row]) -> ChainResult:
    """Run rows through `filters` in order, recording every rejection and flag."""
    current = [(row, {}) for row in rows]
    rejected: list[Rejection] = []
    flagged: list[Flag] = []
    steps = []
    for label, flt in zip(step_labels(filters), filters):
        survivors = []
        counts = {"seen": len(current), "kept": 0, "rejected": 0, "flagged": 0}
        for (row, verdicts), verdict in zip(current, _verdicts_in_order(flt, [r for r, _ in current]), strict=True):
            if not verdict.keep:
                rejected.append(Rejection(row, label, verdict.reason, verdict.score))
                counts["rejected"] += 1
                continue
            if verdict.flagged:
                flagged.append(Flag(row, label, verdict.reason, verdict.score))
                counts["flagged"] += 1
            verdicts[label] = verdict
            survivors.append((row, verdicts))
            counts["kept"] += 1
        steps.append({"step": label, "name": flt.name, "params": flt.params(), **counts})
        current = survivors
    return ChainResult(
        kept=[row for row, _ in current],
        verdicts=[verdicts for _, verdicts in current],
        rejected=rejected,
        flagged=flagged,
        steps=steps,
    )


def _verdicts_in_order(flt: Filter, rows: list[Row]) -> list[Verdict]:
    """Run `flt.apply` and check it answered every row once, in order."""
    answered = list(flt.apply(rows))
    if len(answered) != len(rows) or any(a is not r for (a, _), r in zip(answered, rows)):
        raise RuntimeError(f"filter {flt.name!r}: apply() must yield every input row once, in input order")
    return [verdict for _, verdict in answered]


def _load_builtin_filters() -> None:
    """Import the filter modules so their @register decorators have run."""
    import filters.consistency  # noqa: F401
    import filters.contamination  # noqa: F401
    import filters.dedup  # noqa: F401
    import filters.injection  # noqa: F401
    import filters.quality  # noqa: F401


__all__ = [
    "KEEP",
    "ChainResult",
    "Filter",
    "Flag",
    "Rejection",
    "Verdict",
    "build_chain",
    "build_filter",
    "describe_chain",
    "register",
    "registered_filters",
    "run_chain",
    "step_labels",
]
