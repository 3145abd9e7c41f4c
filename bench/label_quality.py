"""Label quality of the listwise filters against planted noise, on CISI and CACM.

A stub teacher (tests/label_teacher.py: loopback, OpenAI-compatible, answering from the
collections' qrels; a stub, not a model) ranks every list through a real build (Prefect flow,
generators/pointwise + generators/listwise, 3 shuffled samples, window 20, top-up, the
default filter chain, consensus rows), then the audit runs on the published version. A
share of the queries gets a failure mode; the bench knows which, so it can count, per mode
and per filter chain:

- planted-noise rows removed: samples the failure mode answered, of lists holding at least
  one judged-relevant passage; for ``position_biased``, only samples that lifted a passage
  the qrels do not call relevant;
- clean rows removed: the other samples of lists holding at least one judged-relevant passage;
- rows of lists with no judged-relevant passage (no filter can tell a good ranking of them
  from noise), removed share shown apart;
- the audit's estimate of the share of noisy lists (95% interval) against the planted share
  among the lists it judges.

The default chain is the one the build ran; the other chains re-run the same filters
(filters.base.run_chain) over the same validated rows.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 .venv/bin/python bench/label_quality.py [--modes NAME ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from filters.base import build_chain, run_chain  # noqa: E402
from flows.report import compute_audit, load_for_audit  # noqa: E402
from flows.report_lists import noisy_lists, wilson_interval  # noqa: E402
from tests.conftest import shared_data_dir  # noqa: E402
from tests.label_teacher import (LabelTeacher, ingest_collections, judgments_from_warehouse,  # noqa: E402
                                 label_build_spec)
from warehouse.db import Warehouse  # noqa: E402
from warehouse.snapshots import load_qrels  # noqa: E402
from warehouse.versions import load_rows  # noqa: E402
from warehouse.audit import load_rejected_rows  # noqa: E402

COLLECTIONS = ("cisi", "cacm")
DEFAULT_CHAIN = [{"name": "consistency_ndcg"}, {"name": "consistency_agreement"}]
CHAINS = {
    "default (consistency_ndcg + consistency_agreement)": DEFAULT_CHAIN,
    "consistency_agreement alone": [{"name": "consistency_agreement"}],
    "consistency_ndcg alone": [{"name": "consistency_ndcg"}],
    "ReasonRank nDCG@10 >= 0.4 alone": [{"name": "consistency_ndcg", "require_top_positive": False}],
    "old agreement defaults (full tau >= 0.4, RBO >= 0.6)": [
        {"name": "consistency_agreement", "min_top_set": -1.0, "min_top_support": 0.0, "min_tau": 0.4,
         "tau_k": 20, "min_rbo": 0.6, "on_single_sample": "flag"}],
}


@dataclass(frozen=True)
class Mode:
    name: str
    ties: str = "random"
    failure: str = "random"
    noise: float = 0.0
    boundary_swap: float = 0.0


MODES = [
    Mode("perfect, random tie order"),
    Mode("perfect, stable tie order", ties="stable"),
    Mode("random permutations for 30%", noise=0.3),
    Mode("lazy (presented order) for 30%", failure="lazy", noise=0.3),
    Mode("position-biased for 30%", failure="position_biased", noise=0.3),
    Mode("top-correct/tail-random + random for 30%", ties="top_correct", noise=0.3),
    Mode("near misses: 20% of answers swap the relevant/unrelated boundary (clean)", boundary_swap=0.2),
    Mode("sweep: random for 10%", noise=0.1),
    Mode("sweep: random for 50%", noise=0.5),
    Mode("sweep: random for 70%", noise=0.7),
]


def validated_rows(warehouse: Warehouse, dataset: str, version: int) -> list[dict]:
    """The listwise samples that reached the filter chain (kept, or removed by a filter)."""
    kept = [row for row in load_rows(warehouse, dataset, version, "listwise") if not row.get("consensus")]
    removed = [row for row in load_rejected_rows(warehouse, dataset, version, "listwise") if row["_stage"] != "validate"]
    return kept + removed


def row_classes(rows: list[dict], qrels: dict[tuple[str, str], dict[str, int]], teacher: LabelTeacher,
                mode: Mode) -> dict[str, str]:
    """row_id -> "noise", "clean" or "no relevant" (the list holds no judged-relevant passage).

    Rows of a query answered with the failure mode are noise, except with ``position_biased``,
    where only a sample that lifted a passage the qrels do not call relevant is (lifting a
    relevant one leaves a correct ranking)."""
    classes = {}
    for row in rows:
        grades = qrels.get((row["snapshot_id"], row["qid"]), {})
        if not any(grades.get(d, 0) > 0 for d in row["candidates"]):
            classes[row["row_id"]] = "no relevant"
        elif teacher.is_noisy(row["query"]) and (
                mode.failure != "position_biased" or grades.get(row["initial_list"][0], 0) == 0):
            classes[row["row_id"]] = "noise"
        else:
            classes[row["row_id"]] = "clean"
    return classes


def removal_shares(rows: list[dict], kept_ids: set[str], classes: dict[str, str]) -> dict[str, tuple[int, int]]:
    """class -> (rows removed, rows)."""
    shares: dict[str, list[int]] = {}
    for row in rows:
        counts = shares.setdefault(classes[row["row_id"]], [0, 0])
        counts[0] += row["row_id"] not in kept_ids
        counts[1] += 1
    return {name: (removed, total) for name, (removed, total) in shares.items()}


def share_text(counts: tuple[int, int] | None) -> str:
    if not counts or not counts[1]:
        return "–"
    return f"{100 * counts[0] / counts[1]:.1f}% ({counts[0]}/{counts[1]})"


def run_mode(mode: Mode, work: Path, warehouse_path: Path, judgments: dict, qrels: dict) -> list[list[str]]:
    from flows.build import build_flow

    dataset = "lq-" + "".join(c if c.isalnum() else "-" for c in mode.name.lower()).strip("-")
    started = time.perf_counter()
    with LabelTeacher(judgments, ties=mode.ties, failure=mode.failure, noise=mode.noise,
                      boundary_swap=mode.boundary_swap) as teacher:
        spec = label_build_spec(work, dataset, COLLECTIONS, teacher, f"stub-{dataset}", warehouse_path, DEFAULT_CHAIN)
        summary = build_flow(str(spec))
        with Warehouse.open(warehouse_path, read_only=True) as warehouse:
            rows = validated_rows(warehouse, dataset, summary["version"])
            audit = compute_audit(load_for_audit(warehouse, dataset, summary["version"]))
        classes = row_classes(rows, qrels, teacher, mode)
    noisy, judged = noisy_lists(audit.lists)
    judged_ids = {r["list_id"] for r in audit.lists if r["valid"] and r["ndcg_positives"] is not None}
    noise_lists = {row["list_id"] for row in rows if classes[row["row_id"]] == "noise"}
    planted = len(judged_ids & noise_lists)
    low, high = wilson_interval(noisy, judged) if judged else (0.0, 0.0)
    estimate = (f"{noisy / judged:.3f} [{low:.3f}, {high:.3f}] vs planted {planted / judged:.3f} (n={judged})"
                if judged else "n/a")
    print(f"# {mode.name}: build {time.perf_counter() - started:.0f} s, {len(rows)} validated samples of "
          f"{len({row['list_id'] for row in rows})} lists; audit estimate {estimate}", flush=True)
    lines = []
    for chain_name, chain in CHAINS.items():
        kept = {row["row_id"] for row in run_chain(build_chain([dict(item) for item in chain]), rows).kept}
        shares = removal_shares(rows, kept, classes)
        lines.append([mode.name, chain_name, share_text(shares.get("noise")), share_text(shares.get("clean")),
                      share_text(shares.get("no relevant")),
                      estimate if chain is DEFAULT_CHAIN else ""])
        print("  " + " | ".join(lines[-1][1:5]), flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="*", help="substrings of the mode names to run (default: all)")
    parser.add_argument("--work", help="working folder (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    from prefect.testing.utilities import prefect_test_harness

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="label-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    warehouse_path = work / "bench.duckdb"
    modes = [m for m in MODES if not args.modes or any(s in m.name for s in args.modes)]
    try:
        snapshot_ids = ingest_collections(warehouse_path, shared_data_dir(), COLLECTIONS)
        with Warehouse.open(warehouse_path, read_only=True) as warehouse:
            judgments = judgments_from_warehouse(warehouse, snapshot_ids)
            qrels = {(sid, qid): grades for sid in snapshot_ids for qid, grades in load_qrels(warehouse, sid).items()}
        table = []
        with prefect_test_harness(server_startup_timeout=180):
            for mode in modes:
                table += run_mode(mode, work, warehouse_path, judgments, qrels)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| mode | filter chain | planted-noise rows removed | clean rows removed | "
          "rows of lists with no relevant passage removed | audit: noisy lists [95% interval] vs planted |")
    print("|---|---|---|---|---|---|")
    for line in table:
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
