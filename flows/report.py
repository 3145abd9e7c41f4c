"""The label-quality audit of a dataset version: figures, an HTML page and a Markdown summary.

`write_audit(warehouse_path, dataset, version, out_dir, against=None)` reads a published
version (and optionally a second one to compare with), computes every figure with its sample
size, and writes a self-contained HTML page (plots embedded as PNG, nothing fetched) and a
Markdown summary. A section whose data the version lacks says so and why, rather than
showing a number it cannot stand behind.

Figures against human judgments use the qrels of the version's source snapshots (grades
> 0 are relevant; unjudged passages count as not relevant). Relevance metrics come from
filters.metrics (ir-measures / pytrec_eval), Kendall tau from scipy, RBO with p = 0.9.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from filters.consistency import sample_agreement
from filters.metrics import evaluate_rankings, kendall_tau
from flows.report_plots import bars_png, grouped_bars_png, histogram_png, position_png, tokens_png
from warehouse.audit import AuditData, load_audit_data, load_passage_texts
from warehouse.db import Warehouse
from warehouse.errors import WarehouseLocked
from warehouse.names import check_folder

NDCG_K = 10
RECALL_K = 5
CONSISTENCY_ALPHA = 0.4  # ReasonRank's threshold, drawn on the listwise-vs-pointwise plot
DEFAULT_RATIO_BAND = (0.05, 0.20)  # Yi-Sang's Korean-character band
SAMPLES_PER_KIND = 3
NOT_IN_VERSION = "not in this version"


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Stat:
    """A figure and the sample it was computed on; ``value`` None is n/a and ``note`` says why."""

    value: float | None
    n: int
    unit: str
    note: str = ""

    @property
    def value_text(self) -> str:
        return "n/a" if self.value is None else fmt(self.value)

    @property
    def n_text(self) -> str:
        return f"{self.n} {self.unit}"


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def mean_stat(values: Iterable[float | None], unit: str, empty_note: str) -> Stat:
    """Mean of the defined values, with how many there were."""
    defined = [v for v in values if v is not None]
    if not defined:
        return Stat(None, 0, unit, empty_note)
    return Stat(statistics.fmean(defined), len(defined), unit)


def rate_stat(hits: int, total: int, unit: str, empty_note: str) -> Stat:
    return Stat(hits / total, total, unit) if total else Stat(None, 0, unit, empty_note)


def docids_of(items: Any) -> list[str]:
    """Docids from a list of docids or of ``{"docid": ...}`` records."""
    if not isinstance(items, list):
        return []
    return [str(i["docid"]) if isinstance(i, dict) else str(i) for i in items
            if not isinstance(i, dict) or "docid" in i]


def is_ranking(row: dict) -> bool:
    final, presented = row.get("final_list"), row.get("initial_list")
    return bool(final) and isinstance(final, list) and isinstance(presented, list) and len(final) >= 2


def judgments(data: AuditData, row: dict) -> dict[str, int] | None:
    """The qrels of the row's query in its snapshot, or None where there are none."""
    by_query = data.qrels.get(row.get("snapshot_id"))
    if by_query is None and row.get("snapshot_id") is None and len(data.qrels) == 1:
        by_query = next(iter(data.qrels.values()))
    grades = (by_query or {}).get(str(row.get("qid")))
    return grades if grades and any(g > 0 for g in grades.values()) else None


def listwise_pool(data: AuditData) -> tuple[list[dict], list[dict]]:
    """Accepted listwise rows with a ranking, and rejected ones that were ranked (rejected by a
    filter after parsing), each row once."""
    accepted = [r for r in data.rows.get("listwise", []) if is_ranking(r)]
    seen, rejected = {r["row_id"] for r in accepted}, []
    for row in data.rejected.get("listwise", []):
        if is_ranking(row) and row["row_id"] not in seen:
            seen.add(row["row_id"])
            rejected.append(row)
    return accepted, rejected


def configured_retriever(spec: dict) -> str | None:
    """The retriever id the version's spec names, when the spec's candidate settings parse."""
    from generators.candidates import CandidateConfig

    try:
        return CandidateConfig.model_validate(spec.get("candidates") or {}).retriever_id()
    except Exception:  # a spec shape this code does not know: no preference
        return None


def retriever_order(data: AuditData, row: dict) -> tuple[list[str], str | None]:
    """The presented passages in the retriever's order and where that order came from: the
    row's ``candidates`` (retriever order), else a stored candidate list holding them all,
    else (None) the presented order itself."""
    presented = [str(d) for d in row["initial_list"]]
    candidates = docids_of(row.get("candidates"))
    if sorted(candidates) == sorted(presented):
        return candidates, "the row's candidates"
    stored = data.retriever_orders.get((row.get("snapshot_id"), str(row.get("qid"))), {})
    preferred = configured_retriever(data.spec)
    for name in sorted(stored, key=lambda r: (r != preferred, r)):
        rank = {d: i for i, d in enumerate(stored[name])}
        if all(d in rank for d in presented):
            return sorted(presented, key=rank.__getitem__), name
    return presented, None


def by_domain(rows: list[dict], values: list[float | None], unit: str) -> dict[str, Stat]:
    """Mean per domain and over all ("all"), each with its n."""
    groups: dict[str, list[float | None]] = defaultdict(list)
    for row, value in zip(rows, values):
        groups[str(row.get("domain", "?"))].append(value)
    stats = {domain: mean_stat(vals, unit, "no judged rows") for domain, vals in sorted(groups.items())}
    stats["all"] = mean_stat(values, unit, "no judged rows")
    return stats


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]]
    key: str = ""


@dataclass
class Plot:
    caption: str
    uri: str


@dataclass
class RowView:
    """One row, laid out for reading."""

    title: str
    status: str
    fields: list[tuple[str, str]]
    passages: Table | None = None


@dataclass
class Section:
    key: str
    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    rows: list[RowView] = field(default_factory=list)
    available: bool = True


@dataclass
class Headline:
    key: str
    figure: str
    stat: Stat


@dataclass
class Audit:
    """Everything computed for one version."""

    data: AuditData
    headline: list[Headline]
    sections: list[Section]
    qrels_by_domain: dict[str, dict[str, Stat]]  # order -> domain -> nDCG@10


# --------------------------------------------------------------------------- against qrels


def qrels_section(data: AuditData, headline: list[Headline]) -> tuple[Section, dict[str, dict[str, Stat]]]:
    section = Section("qrels", "Against human judgments")
    if not data.qrels:
        section.available = False
        section.notes.append(f"{NOT_IN_VERSION}: none of the version's source snapshots has qrels")
        return section, {}
    section.notes.append(
        f"Judged by the qrels of the source snapshots ({', '.join(s.name for s in data.snapshots if s.n_qrels)}); "
        "grades above 0 are relevant, unjudged passages count as not relevant, and passages the "
        "retriever did not return count as missed, so every order of a list shares the same ceiling "
        "(the best order of the list).")
    by_domain_ndcg = listwise_against_qrels(data, section, headline)
    pointwise_against_qrels(data, section, headline)
    negatives_against_qrels(data, section, headline)
    return section, by_domain_ndcg


def listwise_against_qrels(data: AuditData, section: Section, headline: list[Headline]) -> dict[str, dict[str, Stat]]:
    accepted, rejected = listwise_pool(data)
    if not accepted:
        section.notes.append(f"Listwise rankings: {NOT_IN_VERSION} (no accepted listwise rows).")
        return {}
    measures = [f"nDCG@{NDCG_K}", f"R@{RECALL_K}", "RR"]
    table = Table(f"nDCG@{NDCG_K}, R@{RECALL_K} and MRR against the qrels, per domain",
                  ["order", "domain", f"nDCG@{NDCG_K}", f"R@{RECALL_K}", "MRR", "n"], [], key="qrels-listwise")
    by_order: dict[str, dict[str, dict[str, Stat]]] = {}
    for name, (rows, rankings, unit) in _orders_to_judge(data, accepted, rejected).items():
        judged = [judgments(data, row) for row in rows]
        keep = [i for i, j in enumerate(judged) if j is not None]
        scores = evaluate_rankings([rankings[i] for i in keep], [judged[i] for i in keep], measures)
        kept_rows = [rows[i] for i in keep]
        by_order[name] = {m: by_domain(kept_rows, [s[m] for s in scores], unit) for m in measures}
        for domain, stat in by_order[name][measures[0]].items():
            table.rows.append([name, domain, *(by_order[name][m][domain].value_text for m in measures),
                               stat.n_text])
        if len(rows) > len(keep):
            section.notes.append(f"{name}: {len(rows) - len(keep)} {unit} have no relevant passage in the qrels "
                                 "and are not scored.")
    section.tables.append(table)
    teacher, retriever = by_order["teacher"], by_order["retriever order"]
    headline.append(Headline("teacher_ndcg", f"teacher listwise nDCG@{NDCG_K} vs qrels", teacher[measures[0]]["all"]))
    headline.append(Headline("retriever_ndcg", f"retriever order nDCG@{NDCG_K} vs qrels",
                             retriever[measures[0]]["all"]))
    headline.append(Headline("teacher_recall", f"teacher listwise R@{RECALL_K} vs qrels", teacher[measures[1]]["all"]))
    headline.append(Headline("teacher_mrr", "teacher listwise MRR vs qrels", teacher["RR"]["all"]))
    headline.append(Headline("retriever_mrr", "retriever order MRR vs qrels", retriever["RR"]["all"]))
    ndcg_by_order = {name: stats[measures[0]] for name, stats in by_order.items()}
    section.notes.append(f"Retriever order: {retriever_source(data, accepted)}.")
    section.plots.append(Plot(f"nDCG@{NDCG_K} against the qrels per domain",
                              grouped_bars_png({order: {d: stat.value for d, stat in by_domain.items()}
                                                for order, by_domain in ndcg_by_order.items()}, f"nDCG@{NDCG_K}")))
    return ndcg_by_order


def one_row_per_list(rows: list[dict]) -> list[dict]:
    """The row of each list (list_id, else row_id) with the lowest sample index."""
    lists: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r.get("sample_index") or 0):
        lists.setdefault(str(row.get("list_id") or row["row_id"]), row)
    return list(lists.values())


def retriever_source(data: AuditData, rows: list[dict]) -> str:
    """Where the retriever order of the lists came from, with counts."""
    sources = Counter(retriever_order(data, row)[1] for row in one_row_per_list(rows))
    parts = [f"{name if name.startswith('the row') else 'stored candidate order of ' + name} ({n} lists)"
             for name, n in sorted(sources.items(), key=str) if name is not None]
    if sources.get(None):
        parts.append(f"the presented order, as no stored candidate list holds the passages ({sources[None]} lists)")
    return "; ".join(parts)


def _orders_to_judge(data: AuditData, accepted: list[dict], rejected: list[dict]) -> dict[str, tuple]:
    """Each order judged: the teacher's (accepted rows), the retriever's and the best possible
    order of each list (one per list), and the teacher's on rows the filters rejected."""
    list_rows = one_row_per_list(accepted)
    retriever = [retriever_order(data, row)[0] for row in list_rows]
    best = [sorted(order, key=lambda d, row=row: -(judgments(data, row) or {}).get(d, 0))
            for order, row in zip(retriever, list_rows)]
    orders = {
        "teacher": (accepted, [row["final_list"] for row in accepted], "rows"),
        "retriever order": (list_rows, retriever, "lists"),
        "best order of the list": (list_rows, best, "lists"),
    }
    if rejected:
        orders["teacher, rows the filters rejected"] = (rejected, [row["final_list"] for row in rejected], "rows")
    return orders


def pointwise_against_qrels(data: AuditData, section: Section, headline: list[Headline]) -> None:
    """Precision and recall of the teacher's positives among the candidates it judged."""
    judged_lists, source = pointwise_judgments(data)
    if not judged_lists:
        section.notes.append(f"Pointwise positives: {NOT_IN_VERSION} ({source}).")
        return
    counts: dict[str, Counter] = defaultdict(Counter)
    queries: dict[str, set] = defaultdict(set)
    for row, candidates, named in judged_lists:
        grades = judgments(data, row)
        if grades is None:
            continue
        gold = {d for d in candidates if grades.get(d, 0) > 0}
        for domain in (str(row.get("domain", "?")), "all"):
            counts[domain].update(tp=len(named & gold), named=len(named), gold=len(gold))
            queries[domain].add((row.get("snapshot_id"), str(row.get("qid"))))
    if not counts:
        section.notes.append("Pointwise positives: no judged query among them.")
        return
    table = Table(f"Teacher's pointwise positives against the qrels ({source})",
                  ["domain", "precision", "passages named", "recall", "qrels positives in the lists", "queries"],
                  [], key="qrels-pointwise")
    for domain in sorted(counts, key=lambda d: (d == "all", d)):
        c = counts[domain]
        table.rows.append([domain, fmt(c["tp"] / c["named"]) if c["named"] else "n/a", str(c["named"]),
                           fmt(c["tp"] / c["gold"]) if c["gold"] else "n/a", str(c["gold"]), str(len(queries[domain]))])
    section.tables.append(table)
    total = counts["all"]
    headline.append(Headline("pointwise_precision", "pointwise positives: precision vs qrels",
                             rate_stat(total["tp"], total["named"], "passages named", "no positive named")))
    headline.append(Headline("pointwise_recall", "pointwise positives: recall vs qrels",
                             rate_stat(total["tp"], total["gold"], "qrels positives", "no qrels positive in the lists")))


def pointwise_judgments(data: AuditData) -> tuple[list[tuple[dict, list[str], set[str]]], str]:
    """(row, candidates judged, positives named) per pointwise row (a query's batch), and
    where they came from."""
    pointwise = data.rows.get("pointwise", [])
    per_query = [(row, docids_of(row.get("candidates")), set(docids_of(row.get("relevant_docids"))))
                 for row in pointwise if isinstance(row.get("candidates"), list)]
    if per_query:
        return per_query, "pointwise rows"
    if pointwise:
        return [], "pointwise rows carry no candidates list"
    lists: dict[str, tuple[dict, list[str], set[str]]] = {}
    for row in data.rows.get("listwise", []):
        if row.get("relevant_docids") and isinstance(row.get("initial_list"), list):
            lists.setdefault(str(row.get("list_id") or row["row_id"]),
                             (row, [str(d) for d in row["initial_list"]], set(docids_of(row["relevant_docids"]))))
    if lists:
        return list(lists.values()), "relevant_docids of the listwise rows"
    return [], "no pointwise rows and no listwise row names relevant_docids"


def negatives_against_qrels(data: AuditData, section: Section, headline: list[Headline]) -> None:
    """How many mined negatives the qrels call relevant, before and after the judge."""
    rows = data.rows.get("negatives", [])
    if not rows:
        section.notes.append(f"Mined negatives: {NOT_IN_VERSION} (no negatives rows).")
        return
    groups: dict[str, list[bool]] = defaultdict(list)
    confusion: Counter = Counter()
    failed = 0
    for row in rows:
        grades = judgments(data, row)
        if grades is None:
            continue
        for negative in row.get("negatives") or []:
            if not isinstance(negative, dict) or "docid" not in negative:
                continue
            relevant = grades.get(str(negative["docid"]), 0) > 0
            verdict, status = negative.get("verdict"), negative.get("status")
            for group in negative_groups(status, verdict):
                groups[group].append(relevant)
            if verdict in ("relevant", "not_relevant"):
                confusion[(verdict, relevant)] += 1
            failed += bool(negative.get("judge_error"))
    if not groups:
        section.notes.append("Mined negatives: no negatives row has qrels for its query.")
        return
    table = Table("Mined negatives that the qrels call relevant", ["negatives", "qrels call relevant", "share", "n"],
                  [], key="qrels-negatives")
    for name in [g for g in NEGATIVE_GROUPS if g in groups]:
        flags = groups[name]
        table.rows.append([name, str(sum(flags)), fmt(sum(flags) / len(flags)), f"{len(flags)} negatives"])
    section.tables.append(table)
    if confusion:
        section.tables.append(Table(
            "The false-negative judge against the qrels (negatives it judged)",
            ["judge says", "qrels relevant", "qrels not relevant"],
            [[v, str(confusion[(v, True)]), str(confusion[(v, False)])] for v in ("relevant", "not_relevant")]))
    else:
        section.notes.append(f"The false-negative judge gave no verdict in this version ({failed} judgments failed): "
                             "'after the judge' equals 'before'.")
    for key, name in (("negatives_fn_mined", MINED), ("negatives_fn_before", BEFORE_JUDGE),
                      ("negatives_fn_after", AFTER_JUDGE)):
        flags = groups.get(name, [])
        headline.append(Headline(key, f"negatives the qrels call relevant: {name}",
                                 rate_stat(sum(flags), len(flags), "negatives", "none in this group")))


MINED = "every mined candidate (no positive-aware filter, no judge)"
BEFORE_JUDGE = "hard negatives (positive-aware filter, before the judge)"
AFTER_JUDGE = "hard negatives the judge did not call relevant (trained on)"
SUSPECTED = "suspected false negatives (set aside)"
NEGATIVE_GROUPS = (MINED, BEFORE_JUDGE, AFTER_JUDGE, SUSPECTED)


def negative_groups(status: str | None, verdict: str | None) -> list[str]:
    """The groups a mined negative belongs to; the trained-on rule is the exports' (hard
    negatives whose verdict is not "relevant", warehouse/formats/negatives.py)."""
    groups = [MINED]
    if status == "hard_negative":
        groups.append(BEFORE_JUDGE)
        if verdict != "relevant":
            groups.append(AFTER_JUDGE)
    elif status == "suspected_false_negative":
        groups.append(SUSPECTED)
    return groups


# --------------------------------------------------------------------------- consistency


def consistency_section(data: AuditData, headline: list[Headline]) -> Section:
    section = Section("consistency", "Consistency")
    accepted, rejected = listwise_pool(data)
    if not accepted and not rejected:
        section.available = False
        section.notes.append(f"{NOT_IN_VERSION}: no ranked listwise rows")
        return section
    section.notes.append("Figures over ranked listwise rows: accepted rows, and rows a filter rejected after "
                         "their ranking parsed; the headline gives the accepted ones.")
    pointwise_consistency(accepted, rejected, section, headline)
    sample_consistency(accepted, rejected, section, headline)
    position_bias(accepted, rejected, section, headline)
    return section


def pointwise_consistency(accepted: list[dict], rejected: list[dict], section: Section,
                          headline: list[Headline]) -> None:
    """nDCG@10 of each ranking judged by the row's own pointwise positives (ReasonRank's check)."""
    series = {}
    for name, rows in (("accepted", accepted), ("rejected", rejected)):
        with_positives = [r for r in rows if docids_of(r.get("relevant_docids"))]
        scores = evaluate_rankings([r["final_list"] for r in with_positives],
                                   [docids_of(r["relevant_docids"]) for r in with_positives], [f"nDCG@{NDCG_K}"])
        series[name] = [s[f"nDCG@{NDCG_K}"] for s in scores if s[f"nDCG@{NDCG_K}"] is not None]
    stat = mean_stat(series["accepted"], "rows", "no accepted row has pointwise positives (relevant_docids)")
    headline.append(Headline("listwise_vs_pointwise", f"listwise vs pointwise nDCG@{NDCG_K} (mean)", stat))
    if not series["accepted"] and not series["rejected"]:
        section.notes.append("Listwise vs pointwise: n/a, no row carries pointwise positives (relevant_docids).")
        return
    section.tables.append(distribution_table(f"Listwise vs pointwise nDCG@{NDCG_K}", series, "rows"))
    section.plots.append(Plot(f"Listwise vs pointwise nDCG@{NDCG_K} (ReasonRank keeps ≥ {CONSISTENCY_ALPHA})",
                              histogram_png(series, f"nDCG@{NDCG_K} of the ranking by its own positives",
                                            bins=[i / 10 for i in range(11)], lines=[CONSISTENCY_ALPHA])))


def sample_consistency(accepted: list[dict], rejected: list[dict], section: Section,
                       headline: list[Headline]) -> None:
    """Mean pairwise Kendall tau and RBO(0.9) among the shuffled samples of each list."""
    taus: dict[str, list[float]] = {}
    rbos: dict[str, list[float]] = {}
    for name, rows in (("accepted", accepted), ("rejected", rejected)):
        groups: dict[str, list[list[str]]] = defaultdict(list)
        for row in rows:
            if row.get("list_id") is not None:
                groups[str(row["list_id"])].append(row["final_list"])
        agreements = [_agreement(rankings) for rankings in groups.values() if len(rankings) >= 2]
        agreements = [a for a in agreements if a is not None]
        taus[name] = [a["tau"] for a in agreements]
        rbos[name] = [a["rbo"] for a in agreements]
    note = "no list has two or more samples (rows sharing a list_id)"
    headline.append(Headline("sample_tau", "Kendall τ across shuffled samples (mean per list)",
                             mean_stat(taus["accepted"], "lists", note)))
    headline.append(Headline("sample_rbo", "RBO (p = 0.9) across shuffled samples (mean per list)",
                             mean_stat(rbos["accepted"], "lists", note)))
    if not any(taus.values()):
        section.notes.append(f"Agreement across samples: n/a, {note}.")
        return
    section.tables.append(distribution_table("Kendall τ across samples (mean pairwise, per list)", taus, "lists"))
    section.tables.append(distribution_table("RBO p = 0.9 across samples (mean pairwise, per list)", rbos, "lists"))
    section.plots.append(Plot("Kendall τ across samples of a list",
                              histogram_png(taus, "mean pairwise Kendall τ", bins=[i / 10 - 1 for i in range(21)])))
    section.plots.append(Plot("RBO (p = 0.9) across samples of a list",
                              histogram_png(rbos, "mean pairwise RBO", bins=[i / 20 for i in range(21)])))


def _agreement(rankings: list[list[str]]) -> dict[str, float] | None:
    try:
        return sample_agreement(rankings, p=0.9)
    except ValueError:  # fewer than two common passages
        return None


def position_bias(accepted: list[dict], rejected: list[dict], section: Section, headline: list[Headline]) -> None:
    """How often the first-presented passage is ranked first, against chance (1 / list length).

    In the retriever's order the first passage is also the retriever's best, so the clean
    measure is on shuffled presentations (sample_index > 0); both are shown.
    """
    rows = accepted + rejected
    groups = {"shuffled presentations": [r for r in rows if (r.get("sample_index") or 0) > 0],
              "retriever-order presentations": [r for r in rows if not r.get("sample_index")],
              "all ranked": rows}
    table = Table("Position bias: the first-presented passage ranked first",
                  ["presentations", "observed", "chance (1/len)", "binomial p-value", "n"], [], key="position-bias")
    for name, members in groups.items():
        if members:
            hits, chance, p_value = first_ranked_first(members)
            table.rows.append([name, fmt(hits / len(members)), fmt(chance), f"{p_value:.3g}", f"{len(members)} rows"])
    section.tables.append(table)
    shuffled = [r for r in accepted if (r.get("sample_index") or 0) > 0]
    basis, note = (shuffled, "") if shuffled else (accepted, "no shuffled samples: the first-presented passage is "
                                                             "also the retriever's first")
    if basis:
        hits, chance, _ = first_ranked_first(basis)
        stat = Stat(hits / len(basis), len(basis), "shuffled rows" if shuffled else "rows", note)
    else:
        chance, stat = 0.0, Stat(None, 0, "rows", "no accepted rows")
    headline.append(Headline("position_bias", f"first-presented passage ranked first (chance {chance:.3f})", stat))
    positions = [row["initial_list"].index(row["final_list"][0]) + 1 for row in rows
                 if row["final_list"][0] in row["initial_list"]]
    section.plots.append(Plot("Presented position of the passage the teacher ranked first (all ranked rows)",
                              position_png(positions, [len(row["initial_list"]) for row in rows])))


def first_ranked_first(rows: list[dict]) -> tuple[int, float, float]:
    """(rows whose first-presented passage is ranked first, chance rate, binomial p-value)."""
    from scipy.stats import binomtest

    hits = sum(row["final_list"][0] == row["initial_list"][0] for row in rows)
    chance = statistics.fmean(1 / len(row["initial_list"]) for row in rows)
    return hits, chance, binomtest(hits, len(rows), chance).pvalue


def distribution_table(caption: str, series: dict[str, list[float]], unit: str) -> Table:
    table = Table(caption, ["rows", "mean", "median", "min", "max", "n"], [])
    for name, values in series.items():
        if values:
            table.rows.append([name, fmt(statistics.fmean(values)), fmt(statistics.median(values)),
                               fmt(min(values)), fmt(max(values)), f"{len(values)} {unit}"])
    return table


# --------------------------------------------------------------------------- removed


def removed_section(data: AuditData) -> Section:
    section = Section("removed", "What was removed")
    if not data.rejections:
        section.notes.append("Nothing was rejected in this version.")
        return section
    section.tables.append(Table("Rejections by kind, stage or filter, and reason",
                                ["kind", "stage / filter", "reason", "rows"],
                                [[g["kind"], g["stage"], g["reason"], str(g["count"])] for g in data.rejections],
                                key="rejections"))
    section.plots.append(Plot("Rejected rows by stage and reason", bars_png(
        [f"{g['kind']} · {g['stage']}: {g['reason']}" for g in data.rejections],
        [g["count"] for g in data.rejections], "rows")))
    for group in data.rejections:
        for example in group["examples"]:
            section.rows.append(row_view(data, group["kind"], example,
                                         rejection_status(group["stage"], group["reason"], example.get("_score"))))
    return section


def rejection_status(stage: str, reason: str, score: float | None) -> str:
    return f"rejected by {stage}: {reason}" + ("" if score is None else f" (score {fmt(float(score))})")


# --------------------------------------------------------------------------- language mix


RATIO_FIELD = "target_ratio"  # share of the reasoning's letters in the target script
ANSWER_FIELD = "answer_correct"  # True / False against the references; None without references


def language_section(data: AuditData, headline: list[Headline]) -> Section:
    section = Section("language", "Language mix (mixed_cot)")
    accepted = data.rows.get("mixed_cot", [])
    rejected = data.rejected.get("mixed_cot", [])
    if not accepted and not rejected:
        section.available = False
        section.notes.append(f"{NOT_IN_VERSION}: no mixed_cot rows")
        return section
    low, high = ratio_band(data.spec)
    ratios = {name: [float(r[RATIO_FIELD]) for r in rows if is_number(r.get(RATIO_FIELD))]
              for name, rows in (("accepted", accepted), ("rejected", rejected))}
    all_ratios = ratios["accepted"] + ratios["rejected"]
    if all_ratios:
        in_band = sum(low <= r <= high for r in all_ratios)
        section.tables.append(distribution_table("Target-script character ratio of the reasoning", ratios, "rows"))
        section.plots.append(Plot(f"Target-script ratio of the reasoning; band {low:.0%}–{high:.0%} shaded",
                                  histogram_png(ratios, "target-script character ratio",
                                                bins=[i / 40 for i in range(41)], band=(low, high))))
        headline.append(Headline("ratio_in_band", f"mixed_cot ratio in band {low:.0%}–{high:.0%} (all traces)",
                                 rate_stat(in_band, len(all_ratios), "rows", "")))
    else:
        section.notes.append(f"Ratio histogram: n/a, no mixed_cot row carries a {RATIO_FIELD}.")
    checks = {name: [r[ANSWER_FIELD] for r in rows if isinstance(r.get(ANSWER_FIELD), bool)]
              for name, rows in (("accepted", accepted), ("rejected", rejected))}
    every = checks["accepted"] + checks["rejected"]
    accuracy = rate_stat(sum(every), len(every), "answers checked",
                         "no row has an answer check (no reference answers?)")
    headline.append(Headline("answer_accuracy", "mixed_cot answer accuracy (all traces)", accuracy))
    section.tables.append(Table("Answer check against the reference answers", ["rows", "correct", "checked", "accuracy"],
                                [[name, str(sum(c)), str(len(c)), fmt(sum(c) / len(c)) if c else "n/a"]
                                 for name, c in (*checks.items(), ("all", every))]))
    in_target = [r.get("answer_language") == r.get("language") for r in accepted + rejected
                 if r.get("answer_language") and r.get("language")]
    headline.append(Headline("answer_language", "mixed_cot answers in the target language (all traces)",
                             rate_stat(sum(in_target), len(in_target), "answers", "no answer_language on the rows")))
    return section


def ratio_band(spec: dict) -> tuple[float, float]:
    """The target language's band from the version's spec (Yi-Sang's 5–20% by default)."""
    from generators.mixed_cot import MixedCotConfig

    try:
        return tuple(MixedCotConfig.model_validate(spec.get("mixed_cot") or {}).band)
    except Exception:  # a spec shape this code does not know: the default band
        return DEFAULT_RATIO_BAND


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- cost


TEACHER_COLUMNS = ("kind", "backend", "model", "calls_made", "calls_reused", "calls_failed", "prompt_tokens",
                   "completion_tokens", "seconds")


def cost_section(data: AuditData, headline: list[Headline]) -> Section:
    section = Section("cost", "Cost")
    teachers = [t for t in data.manifest.get("teachers") or [] if isinstance(t, dict)]
    if teachers:
        extra = sorted({k for t in teachers for k in t if ("cost" in k or "usd" in k) and k not in TEACHER_COLUMNS})
        columns = [c for c in TEACHER_COLUMNS if any(c in t for t in teachers)] + extra
        section.tables.append(Table("What this build spent, per stage and teacher (version manifest)", columns,
                                    [[fmt(t.get(c)) for c in columns] for t in teachers], key="cost-build"))
        calls = sum(int(t.get("calls_made") or 0) for t in teachers)
        headline.append(Headline("calls_made", "teacher calls made by this build",
                                 Stat(calls, len(teachers), "teacher stages")))
    else:
        section.notes.append("Build spend per stage: n/a, the version manifest records no teachers.")
    totals = data.manifest.get("cost") if isinstance(data.manifest.get("cost"), dict) else {}
    if totals:
        section.tables.append(Table("Build totals (version manifest)", ["figure", "value"],
                                    [[k, fmt(v)] for k, v in totals.items()], key="cost-totals"))
    headline.append(Headline("cost_usd", "teacher cost of this build (USD)", build_usd(totals, teachers)))
    timings = flatten(data.manifest.get("timings") or {})
    if timings:
        section.tables.append(Table("Timings (version manifest)", ["stage", "seconds"],
                                    [[k, fmt(v)] for k, v in timings.items()], key="cost-timings"))
    if data.calls:
        section.tables.append(Table(
            "Recorded teacher calls behind this version's rows (accepted and rejected), cached or not",
            ["kind", "model", "calls", "ok", "prompt tokens", "completion tokens", "call seconds"],
            [[c["kind"], c["model"], str(c["calls"]), str(c["ok"]), fmt(c["prompt_tokens"]),
              fmt(c["completion_tokens"]), f"{(c['latency_ms'] or 0) / 1000:.1f}"] for c in data.calls],
            key="cost-calls"))
        tokens = sum((c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0) for c in data.calls)
        headline.append(Headline("tokens", "teacher tokens behind the rows",
                                 Stat(tokens, sum(c["calls"] for c in data.calls), "calls")))
        section.plots.append(Plot("Tokens per kind and model", tokens_png(data.calls)))
    else:
        section.notes.append("Recorded calls: none found for this version's rows (no call_keys in their lineage).")
    return section


def build_usd(totals: dict, teachers: list[dict]) -> Stat:
    """The build's USD cost from the manifest's totals, else from per-stage costs."""
    if isinstance(totals.get("usd"), (int, float)):
        return Stat(totals["usd"], totals.get("calls_made") or 0, "calls made")
    priced = [t[k] for t in teachers for k in ("cost_usd", "usd", "cost") if is_number(t.get(k))]
    if priced:
        return Stat(sum(priced), len(priced), "priced stages")
    reason = "the spec gives no prices (pricing)" if "usd" in totals else "the manifest records no cost"
    return Stat(None, 0, "calls made", reason)


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (int, float)):
            flat[name] = value
    return flat


# --------------------------------------------------------------------------- comparison


def comparison_section(main: Audit, other: Audit) -> Section:
    a, b = main.data.label, other.data.label
    section = Section("comparison", f"Comparison: {a} and {b}")
    teachers = [teacher_names(audit.data) for audit in (main, other)]
    section.notes.append(f"Teachers: {a}: {teachers[0] or 'n/a'}; {b}: {teachers[1] or 'n/a'}.")
    section.tables.append(headline_comparison(main, other))
    ndcg_rows = []
    for order in dict.fromkeys([*main.qrels_by_domain, *other.qrels_by_domain]):
        domains = set(main.qrels_by_domain.get(order, {})) | set(other.qrels_by_domain.get(order, {}))
        for domain in sorted(domains, key=lambda d: (d == "all", d)):
            sa = main.qrels_by_domain.get(order, {}).get(domain)
            sb = other.qrels_by_domain.get(order, {}).get(domain)
            ndcg_rows.append([order, domain, *(cell for s in (sa, sb) for cell in
                                               ((s.value_text, s.n_text) if s else ("n/a", "—")))])
    if ndcg_rows:
        section.tables.append(Table(f"nDCG@{NDCG_K} against the qrels, side by side",
                                    ["order", "domain", a, "n", b, "n"], ndcg_rows))
    agreement(main.data, other.data, section)
    return section


def teacher_names(data: AuditData) -> str:
    names = {f"{t.get('backend', '?')} · {t.get('model', '?')}" for t in data.manifest.get("teachers") or []
             if isinstance(t, dict)}
    return ", ".join(sorted(names))


def headline_comparison(main: Audit, other: Audit) -> Table:
    a, b = main.data.label, other.data.label
    mine, theirs = {h.key: h for h in main.headline}, {h.key: h for h in other.headline}
    table = Table("Headline figures side by side", ["figure", a, "n", b, "n"], [], key="comparison")
    for key in dict.fromkeys([*mine, *theirs]):
        figure = (mine.get(key) or theirs[key]).figure
        cells = [(h.stat.value_text, h.stat.n_text) if h else ("n/a", "—") for h in (mine.get(key), theirs.get(key))]
        table.rows.append([figure, *cells[0], *cells[1]])
    return table


def match_key(row: dict) -> tuple:
    if row.get("list_id") is not None:
        return ("list", str(row["list_id"]), row.get("sample_index", 0))
    return ("row", str(row["row_id"]))


def agreement(a: AuditData, b: AuditData, section: Section) -> None:
    """Kendall tau between the two versions' rankings of the same lists (same list_id and
    sample index, else the same row id), and how often they put the same passage first."""
    theirs = {match_key(r): r for r in b.rows.get("listwise", []) if is_ranking(r)}
    pairs = [(r, theirs[match_key(r)]) for r in a.rows.get("listwise", []) if is_ranking(r) and match_key(r) in theirs]
    taus, same_first = [], 0
    for mine, other in pairs:
        try:
            taus.append(kendall_tau(mine["final_list"], other["final_list"]))
        except ValueError:  # fewer than two passages in common
            continue
        same_first += mine["final_list"][0] == other["final_list"][0]
    if not taus:
        section.notes.append("Agreement: n/a, no list is ranked in both (rows match by list_id and sample_index, "
                             "else by row_id).")
        return
    section.tables.append(Table(f"Agreement between {a.label} and {b.label} on the same lists",
                                ["figure", "value", "n"],
                                [["Kendall τ (mean)", fmt(statistics.fmean(taus)), f"{len(taus)} samples"],
                                 ["Kendall τ (median)", fmt(statistics.median(taus)), f"{len(taus)} samples"],
                                 ["same passage ranked first", fmt(same_first / len(taus)), f"{len(taus)} samples"]],
                                key="agreement"))
    section.plots.append(Plot(f"Kendall τ between {a.label} and {b.label}, per list sample",
                              histogram_png({"samples": taus}, "Kendall τ", bins=[i / 10 - 1 for i in range(21)])))


# --------------------------------------------------------------------------- samples


def sample_rows(data: AuditData) -> list[tuple[str, dict, str]]:
    """(kind, row, status) of a few accepted rows per kind and a few rejected rows per kind,
    rejected ones spread over reasons; stable (lowest row ids first)."""
    picked = []
    for kind, rows in sorted(data.rows.items()):
        picked += [(kind, row, "accepted") for row in rows[:SAMPLES_PER_KIND]]
    for kind, rows in sorted(data.rejected.items()):
        by_reason: dict[tuple, dict] = {}
        for row in rows:
            by_reason.setdefault((row["_stage"], row["_reason"]), row)
        spread = list(by_reason.values()) + [r for r in rows if r not in by_reason.values()]
        picked += [(kind, row, rejection_status(row["_stage"], row["_reason"], row["_score"]))
                   for row in spread[:SAMPLES_PER_KIND]]
    return picked


def samples_section(data: AuditData) -> Section:
    section = Section("samples", "Samples to read")
    for kind, row, status in sample_rows(data):
        section.rows.append(row_view(data, kind, row, status))
    if not section.rows:
        section.notes.append("The version has no rows.")
    return section


def passage_keys(data: AuditData) -> set[tuple[str, str]]:
    """The passages the samples and rejection examples show."""
    rows = [row for _, row, _ in sample_rows(data)] + [e for g in data.rejections for e in g["examples"]]
    keys = set()
    for row in rows:
        sid = row.get("snapshot_id")
        for docid in shown_docids(row):
            keys.add((sid, docid))
    return {(s, d) for s, d in keys if s is not None}


def shown_docids(row: dict) -> list[str]:
    docids = docids_of(row.get("initial_list")) + docids_of(row.get("negatives")) + docids_of(row.get("positives"))
    docids += docids_of(row.get("candidates"))
    if row.get("docid") is not None:
        docids.append(str(row["docid"]))
    return docids


CLIP = {"reasoning": 1500, "answer": 600, "passage": 240, "other": 400}
PASSAGE_ROWS = 20
LINEAGE = ("teacher_backend", "teacher_model", "prompt_name", "prompt_version", "sampling", "call_keys",
           "snapshot_id", "filter_verdicts")
HIDDEN_FIELDS = {"row_id", "qid", "domain", "initial_list", "final_list", "permutation", "negatives", "candidates",
                 "messages", "prompt_messages", "_stage", "_reason", "_score", *LINEAGE}


def row_view(data: AuditData, kind: str, row: dict, status: str) -> RowView:
    """A row laid out for reading: query first, reasoning and answer last, lineage on one
    line, then its passages as a table."""
    title = f"{kind} · row {row.get('row_id', '?')} · {row.get('domain', '?')} · qid {row.get('qid', '?')}"
    fields = []
    for name, value in row.items():
        if name in HIDDEN_FIELDS or value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        fields.append((name, clip(text, CLIP.get(name, CLIP["other"]))))
    fields.sort(key=lambda f: (f[0] not in ("query", "prompt", "question"), f[0] in ("reasoning", "answer"), f[0]))
    fields.append(("lineage", lineage_line(row)))
    return RowView(title, status, fields, passages_table(data, row))


def lineage_line(row: dict) -> str:
    teacher = " · ".join(str(row[k]) for k in ("teacher_backend", "teacher_model") if row.get(k))
    prompt = "@".join(str(row[k]) for k in ("prompt_name", "prompt_version") if row.get(k))
    parts = [f"teacher {teacher}" if teacher else "", f"prompt {prompt}" if prompt else "",
             f"sampling {json.dumps(row['sampling'])}" if row.get("sampling") else "",
             f"{len(row['call_keys'])} call(s)" if isinstance(row.get("call_keys"), list) else "",
             f"snapshot {row['snapshot_id']}" if row.get("snapshot_id") else "",
             f"filters {json.dumps(row['filter_verdicts'], ensure_ascii=False)}" if row.get("filter_verdicts") else ""]
    return clip(" · ".join(p for p in parts if p) or "n/a (no lineage on this row)", CLIP["other"])


def passages_table(data: AuditData, row: dict) -> Table | None:
    grades = judgments(data, row) or {}
    positives = set(docids_of(row.get("relevant_docids")))
    sid = row.get("snapshot_id")
    presented = docids_of(row.get("initial_list")) or docids_of(row.get("candidates"))
    if presented:
        ranked = [str(d) for d in row.get("final_list") or []]
        order = ranked or presented
        caption = ("Passages in the teacher's order" if ranked else "Passages as presented (no ranking)"
                   if row.get("initial_list") else "Candidates judged (the teacher's positives marked)")
        table = Table(caption,
                      ["teacher rank", "presented as", "docid", "qrels grade", "teacher positive", "passage"], [])
        rank = {d: i for i, d in enumerate(ranked, start=1)}
        position = {d: i for i, d in enumerate(presented, start=1)}
        for docid in order[:PASSAGE_ROWS]:
            table.rows.append([str(rank.get(docid, "—")), f"[{position[docid]}]" if docid in position else "—",
                               docid, str(grades.get(docid, "—")), "yes" if docid in positives else "",
                               passage_snippet(data, sid, docid)])
        if len(order) > PASSAGE_ROWS:
            table.rows.append(["…", "", "", "", "", f"{len(order) - PASSAGE_ROWS} more passages"])
        return table
    if isinstance(row.get("negatives"), list):
        table = Table("Negatives", ["docid", "retriever rank", "score", "status", "verdict", "qrels grade", "passage"], [])
        for negative in row["negatives"]:
            if isinstance(negative, dict) and "docid" in negative:
                docid = str(negative["docid"])
                verdict = negative.get("verdict") or (f"judge failed: {negative['judge_error']}"
                                                      if negative.get("judge_error") else "not judged")
                table.rows.append([docid, fmt(negative.get("rank")), fmt(negative.get("score")),
                                   fmt(negative.get("status")), verdict,
                                   str(grades.get(docid, "—")), passage_snippet(data, sid, docid)])
        return table
    return None


def passage_snippet(data: AuditData, sid: str | None, docid: str) -> str:
    title, text = data.passages.get((sid, docid), ("", ""))
    joined = f"{title}. {text}" if title else text
    return clip(joined, CLIP["passage"]) if joined else "(passage text not loaded)"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + f" … [{len(text) - limit} more characters]"


# --------------------------------------------------------------------------- the audit


def compute_audit(data: AuditData) -> Audit:
    """Every figure and section of one version's audit."""
    accepted = sum(len(rows) for rows in data.rows.values())
    attempted = accepted + sum(group["count"] for group in data.rejections)
    headline = [Headline("rows", f"rows accepted ({', '.join(sorted(data.rows)) or 'no kind'})",
                         Stat(accepted, attempted, "rows attempted"))]
    qrels, by_domain_ndcg = qrels_section(data, headline)
    sections = [qrels, consistency_section(data, headline), removed_section(data),
                language_section(data, headline), cost_section(data, headline), samples_section(data)]
    return Audit(data, headline, sections, by_domain_ndcg)


def load_for_audit(warehouse: Warehouse, dataset: str, version: int | None) -> AuditData:
    """The version's audit data, with the texts of the passages its samples show."""
    data = load_audit_data(warehouse, dataset, version)
    data.passages = load_passage_texts(warehouse, passage_keys(data))
    return data


def headline_table(audit: Audit) -> list[dict[str, str]]:
    """The headline as records (figure, value, n, note): the Prefect table artifact."""
    return [{"figure": h.figure, "value": h.stat.value_text, "n": h.stat.n_text, "note": h.stat.note}
            for h in audit.headline]


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    headline: list[dict[str, str]]
    markdown_text: str


def write_audit(warehouse_path: str | Path, dataset: str, version: int | None, out_dir: str | Path,
                against: tuple[str, int | None] | None = None, wait_seconds: float = 0.0) -> ReportFiles:
    """Audit ``dataset@version`` (latest published when None), optionally against another
    version, and write ``<dataset>-v<N>[-vs-<other>-v<M>].html`` and ``.md`` into ``out_dir``.

    The audit reads the warehouse itself (qrels, rejected rows, teacher calls are not in the
    exports); while a build holds it, wait up to ``wait_seconds``, then say so.
    """
    try:
        warehouse = Warehouse.open(warehouse_path, read_only=True, wait_seconds=wait_seconds)
    except WarehouseLocked as exc:
        raise WarehouseLocked(f"{str(exc).rstrip('.')}. The audit reads qrels, rejected rows and teacher calls, which only the "
                              "warehouse holds, so it cannot fall back to the exports", exc.holder) from None
    from flows.review_report import human_review_section  # it builds on this module's Section

    with warehouse:
        main = compute_audit(load_for_audit(warehouse, dataset, version))
        other = compute_audit(load_for_audit(warehouse, *against)) if against else None
        main.sections.insert(-1, human_review_section(warehouse, main.data.dataset, main.data.version))
    if other is not None:
        main.sections.insert(-1, comparison_section(main, other))
    stem = f"{main.data.dataset}-v{main.data.version}" + (
        f"-vs-{other.data.dataset}-v{other.data.version}" if other else "")
    out = check_folder(out_dir, "audit folder")
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(main, other)
    html_path, md_path = out / f"{stem}.html", out / f"{stem}.md"
    write_atomically(html_path, render_html(main, other))
    write_atomically(md_path, markdown)
    return ReportFiles(html_path, md_path, headline_table(main), markdown)


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


# --------------------------------------------------------------------------- rendering


def render_markdown(audit: Audit, other: Audit | None = None) -> str:
    """The summary: headline and every section's tables and notes (plots are in the HTML)."""
    data = audit.data
    lines = [f"# Label-quality audit: {data.label}" + (f" vs {other.data.label}" if other else ""), "",
             f"Published {data.published_at} · code {data.code_version} · "
             f"snapshots {', '.join(f'{s.name} ({s.n_qrels} judged pairs' + (f', {s.n_skipped} records skipped at ingest' if s.n_skipped else '') + ')' for s in data.snapshots) or 'n/a'}", "",
             "## Headline", "", *markdown_table(["figure", "value", "n", "note"],
                                                 [list(r.values()) for r in headline_table(audit)])]
    for section in audit.sections:
        if section.key == "samples":
            continue
        lines += ["", f"## {section.title}", ""]
        lines += [f"- {note}" for note in section.notes]
        for table in section.tables:
            lines += ["", f"**{table.caption}**", "", *markdown_table(table.columns, table.rows)]
    lines += ["", "Plots and samples to read are in the HTML report.", ""]
    return "\n".join(lines)


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(map(cell, row)) + " |" for row in rows)]


def render_html(audit: Audit, other: Audit | None = None) -> str:
    """One self-contained page: inline CSS, plots as data URIs, every text HTML-escaped."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(PAGE).render(
        audit=audit, other=other, data=audit.data, headline=headline_table(audit),
        teachers=teacher_names(audit.data) or "n/a")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Label-quality audit: {{ data.label }}{% if other %} vs {{ other.data.label }}{% endif %}</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a202c;
       max-width: 1100px; margin: 0 auto; padding: 1.5rem; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #e2e8f0; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.meta, .note { color: #4a5568; }
.na { color: #9c4221; }
nav a { margin-right: .8rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid #cbd5e0; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #edf2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#headline { font-size: 1rem; }
#headline td:first-child { font-weight: 500; }
figure { margin: .5rem 0 1.2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e8f0; }
figcaption { color: #4a5568; font-size: .85rem; }
.row { border: 1px solid #cbd5e0; border-radius: 6px; padding: .6rem .9rem; margin: .8rem 0; }
.row h3 { margin-top: 0; font-family: ui-monospace, monospace; font-size: .85rem; }
.status { font-weight: 600; }
.status.rejected { color: #c05621; } .status.accepted { color: #276749; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: .4rem 0; }
dt { font-weight: 600; color: #4a5568; }
dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.row table { font-size: .8rem; }
.row td:nth-child(-n+5) { white-space: nowrap; }
table { min-width: 24rem; }
</style>
</head>
<body>
<h1>Label-quality audit: {{ data.label }}{% if other %} vs {{ other.data.label }}{% endif %}</h1>
<p class="meta">Published {{ data.published_at }} · code {{ data.code_version }} ·
teachers {{ teachers }}{% for s in data.snapshots %}{% if loop.first %} · snapshots {% endif %}{{ s.name }}
({{ s.domain }}, {{ s.n_queries }} queries, {{ s.n_qrels }} judged pairs{% if s.n_skipped %}, {{ s.n_skipped }} records skipped at ingest{% endif %}){% if not loop.last %}, {% endif %}{% endfor %}</p>
<nav><a href="#headline-section">Headline</a>{% for s in audit.sections %}<a href="#{{ s.key }}">{{ s.title }}</a>{% endfor %}</nav>

<section id="headline-section">
<h2>Headline</h2>
<table id="headline">
<caption>Headline figures of {{ data.label }}, each with its sample size</caption>
<thead><tr><th>figure</th><th>value</th><th>n</th><th>note</th></tr></thead>
<tbody>
{% for h in headline %}<tr><td>{{ h.figure }}</td><td class="num">{{ h.value }}</td><td>{{ h.n }}</td><td class="note">{{ h.note }}</td></tr>
{% endfor %}</tbody>
</table>
</section>

{% macro render_table(t) %}
<table{% if t.key %} id="{{ t.key }}"{% endif %}>
<caption>{{ t.caption }}</caption>
<thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in t.rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table>
{% endmacro %}

{% for s in audit.sections %}
<section id="{{ s.key }}">
<h2>{{ s.title }}</h2>
{% for n in s.notes %}<p class="note{% if not s.available %} na{% endif %}">{{ n }}</p>{% endfor %}
{% for t in s.tables %}{{ render_table(t) }}{% endfor %}
{% for p in s.plots %}<figure><img src="{{ p.uri }}" alt="{{ p.caption }}"><figcaption>{{ p.caption }}</figcaption></figure>{% endfor %}
{% for r in s.rows %}
<div class="row">
<h3>{{ r.title }}</h3>
<p class="status {{ 'accepted' if r.status == 'accepted' else 'rejected' }}">{{ r.status }}</p>
<dl>{% for name, text in r.fields %}<dt>{{ name }}</dt><dd>{{ text }}</dd>{% endfor %}</dl>
{% if r.passages %}{{ render_table(r.passages) }}{% endif %}
</div>
{% endfor %}
</section>
{% endfor %}
</body>
</html>
"""
