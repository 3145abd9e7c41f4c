"""Audit figures on constructed versions whose right answers are known (no teacher)."""

from __future__ import annotations

import math

import pytest

from flows.report import Audit, AuditData, comparison_section, compute_audit, load_for_audit
from tests.audit_data import HOSTILE, build_audit_warehouse, listwise_row
from warehouse.db import Warehouse


@pytest.fixture(scope="module")
def audits(tmp_path_factory) -> dict[str, Audit]:
    path = build_audit_warehouse(tmp_path_factory.mktemp("audit"))
    with Warehouse.open(path, read_only=True) as wh:
        return {name: compute_audit(load_for_audit(wh, name, None)) for name in ("ideal", "reversed")}


def headline(audit: Audit, key: str):
    return next(h.stat for h in audit.headline if h.key == key)


def section(audit: Audit, key: str):
    return next(s for s in audit.sections if s.key == key)


def table(audit: Audit, section_key: str, table_key: str) -> list[list[str]]:
    return next(t.rows for t in section(audit, section_key).tables if t.key == table_key)


def dcg(grades: list[int]) -> float:
    """Textbook DCG with linear gains (trec_eval's): sum of rel_i / log2(i + 1)."""
    return sum(g / math.log2(i + 1) for i, g in enumerate(grades, start=1))


# Every list holds p1 (grade 2), p2 (grade 1) and four unjudged passages; the retriever
# returned them as p3, p1, p4, p2, p5, p6; "reversed" ranks them p6, p5, p4, p3, p2, p1.
IDEAL = dcg([2, 1, 0, 0, 0, 0])
REVERSED_NDCG = dcg([0, 0, 0, 0, 1, 2]) / IDEAL
RETRIEVER_NDCG = dcg([0, 2, 0, 1, 0, 0]) / IDEAL


def test_teacher_ranking_in_qrels_order_scores_one_per_domain(audits):
    by_order = audits["ideal"].qrels_by_domain
    for domain in ("alpha", "beta", "all"):
        assert by_order["teacher"][domain].value == pytest.approx(1.0)
        assert by_order["best order of the list"][domain].value == pytest.approx(1.0)
    assert by_order["teacher"]["all"].n == 8 and by_order["teacher"]["alpha"].n == 4
    # the one ranked row a filter removed was ranked in reverse
    filtered = by_order["teacher, rows the filters rejected"]
    assert (filtered["beta"].value, filtered["beta"].n) == (pytest.approx(REVERSED_NDCG), 1)
    assert "alpha" not in filtered
    assert headline(audits["ideal"], "teacher_mrr").value == pytest.approx(1.0)
    assert headline(audits["ideal"], "teacher_recall").value == pytest.approx(1.0)


def test_reversed_ranking_matches_the_textbook_value(audits):
    audit = audits["reversed"]
    assert REVERSED_NDCG == pytest.approx(0.4178, abs=1e-4)
    for domain in ("alpha", "beta", "all"):
        assert audit.qrels_by_domain["teacher"][domain].value == pytest.approx(REVERSED_NDCG)
    assert headline(audit, "teacher_mrr").value == pytest.approx(1 / 5)  # p2 comes fifth
    assert headline(audit, "teacher_recall").value == pytest.approx(1 / 2)  # only p2 in the top 5


def test_retriever_order_comes_from_the_rows_or_the_stored_candidate_lists(audits):
    """Sample 1 was presented shuffled; the baseline is the retriever's order, one per list,
    from the rows' candidates (reversed) or the stored lists (ideal)."""
    for name, source in (("ideal", "stored candidate order of bm25:k=6 (4 lists)"),
                         ("reversed", "the row's candidates (4 lists)")):
        stat = headline(audits[name], "retriever_ndcg")
        assert (stat.value, stat.n, stat.unit) == (pytest.approx(RETRIEVER_NDCG), 4, "lists")
        assert headline(audits[name], "retriever_mrr").value == pytest.approx(1 / 2)
        assert any(source in note for note in section(audits[name], "qrels").notes)


def test_pointwise_precision_and_recall(audits):
    audit = audits["ideal"]
    assert headline(audit, "pointwise_precision").value == pytest.approx(0.5)  # p1 right, p3 wrong
    assert headline(audit, "pointwise_recall").value == pytest.approx(0.5)  # p1 found, p2 missed
    assert headline(audit, "pointwise_recall").n == 8
    assert ["all", "0.500", "8", "0.500", "8", "4"] in table(audit, "qrels", "qrels-pointwise")  # 4 queries, 8 batches


def test_mined_negatives_the_qrels_call_relevant_before_and_after_the_judge(audits):
    audit = audits["ideal"]
    mined, before, after = (headline(audit, k) for k in ("negatives_fn_mined", "negatives_fn_before",
                                                         "negatives_fn_after"))
    assert (mined.value, mined.n) == (pytest.approx(1 / 4), 16)  # p2 among p2..p5, four queries
    assert (before.value, before.n) == (pytest.approx(1 / 3), 12)  # p2 among the hard negatives p2..p4
    assert (after.value, after.n) == (0.0, 8)  # the judge called p2 relevant: p3, p4 remain
    judge = next(t.rows for t in section(audit, "qrels").tables if t.caption.startswith("The false-negative judge"))
    assert judge == [["relevant", "4", "0"], ["not_relevant", "0", "8"]]


def test_consistency_figures(audits):
    audit = audits["ideal"]
    # ranked p1..p6 by positives {p1, p3}: DCG 1 + 1/log2(4) against ideal 1 + 1/log2(3)
    assert headline(audit, "listwise_vs_pointwise").value == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert (headline(audit, "sample_tau").value, headline(audit, "sample_tau").n) == (pytest.approx(1.0), 4)
    assert headline(audit, "sample_rbo").value == pytest.approx(1.0)
    # position bias is measured on the shuffled samples (sample 1): count those presenting p1 first
    shuffled = [listwise_row("s", d, q, 1, False) for d in ("alpha", "beta") for q in (1, 2)]
    firsts = sum(row["initial_list"][0] == row["final_list"][0] for row in shuffled)
    bias = headline(audit, "position_bias")
    assert (bias.value, bias.n, bias.unit) == (pytest.approx(firsts / 4), 4, "shuffled rows")
    assert "chance 0.167" in next(h.figure for h in audit.headline if h.key == "position_bias")
    by_presentation = {row[0]: row for row in table(audit, "consistency", "position-bias")}
    assert by_presentation["retriever-order presentations"][1:] == ["0.000", "0.167", "1", "4 rows"]  # p3 first


def test_rejections_by_reason_with_two_examples_each(audits):
    rows = table(audits["ideal"], "removed", "rejections")
    assert rows == [["mixed_cot", "validate", "ratio_out_of_band", "2"],
                    ["listwise", "consistency_agreement", "low_agreement_tau", "1"],
                    ["listwise", "validate", "wrong_format", "1"], ["mixed_cot", "validate", "wrong_answer", "1"]]
    examples = section(audits["ideal"], "removed").rows
    assert [r.status.split(":")[1].split(" (")[0].strip() for r in examples] == [
        "ratio_out_of_band", "ratio_out_of_band", "low_agreement_tau", "wrong_format", "wrong_answer"]
    assert examples[2].status == "rejected by consistency_agreement: low_agreement_tau (score -1.000)"
    wrong_format = next(r for r in examples if "wrong_format" in r.status)
    assert ("answer", HOSTILE) in wrong_format.fields  # kept raw here; the page escapes it


def test_per_list_table_with_verdicts_and_the_noise_estimate(audits):
    audit = audits["ideal"]
    records = {r["list_id"]: r for r in audit.lists}
    assert set(records) == {f"list-{d}-q{q}" for d in ("alpha", "beta") for q in (1, 2)}
    alpha = records["list-alpha-q1"]  # two identical samples kept, one that failed validation
    assert (alpha["presented"], alpha["valid"], alpha["kept"], alpha["status"]) == (3, 2, 2, "kept")
    assert alpha["reasons"] == "validate:wrong_format" and alpha["agreement"] == pytest.approx(1.0)
    assert alpha["ndcg_qrels"] == pytest.approx(1.0)
    assert alpha["ndcg_positives"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    beta = records["list-beta-q1"]  # a third sample, reversed, removed by the agreement filter
    assert (beta["valid"], beta["kept"]) == (3, 2) and beta["agreement"] < 1.0
    assert beta["reasons"] == "consistency_agreement:low_agreement_tau"
    noisy = headline(audit, "noisy_lists")  # every judged list kept: 0 of 4, Wilson upper bound 3.84 / 7.84
    assert (noisy.value, noisy.n) == (0.0, 4) and "95% interval 0.000–0.490" in noisy.note
    assert headline(audit, "lists_unchecked").value == 0
    per_list = next(t for t in section(audit, "lists").tables if t.key == "per-list")
    assert per_list.sortable and len(per_list.rows) == 4
    assert headline(audits["reversed"], "noisy_lists").note == "no consistency filter ran on this version"


def test_language_mix_and_cost(audits):
    audit = audits["ideal"]
    in_band = headline(audit, "ratio_in_band")  # accepted 0.1 ×3 in band; rejected 0.6, 0.01 out, 0.12 in
    assert (in_band.value, in_band.n) == (pytest.approx(4 / 6), 6)
    accuracy = headline(audit, "answer_accuracy")
    assert (accuracy.value, accuracy.n) == (pytest.approx(3 / 6), 6)
    assert headline(audit, "answer_language").value == pytest.approx(5 / 6)  # cot-8 answered in English
    assert headline(audit, "cost_usd").value == pytest.approx(0.01)
    assert ["stages.listwise", "1.500"] in table(audit, "cost", "cost-timings")


def test_missing_kinds_are_reported_not_computed(audits):
    audit = audits["reversed"]
    assert not section(audit, "language").available
    assert section(audit, "language").notes == ["not in this version: no mixed_cot rows"]
    assert any("Mined negatives: not in this version" in n for n in section(audit, "qrels").notes)
    assert not any(h.key == "negatives_fn_before" for h in audit.headline)


def test_comparison_agreement_between_the_two_teachers(audits):
    comparison = comparison_section(audits["ideal"], audits["reversed"])
    agreement = next(t for t in comparison.tables if t.key == "agreement").rows
    assert agreement[0] == ["Kendall τ (mean)", "-1.000", "8 samples"]
    assert agreement[2] == ["same passage ranked first", "0.000", "8 samples"]
    side_by_side = {r[0]: r for r in next(t for t in comparison.tables if t.key == "comparison").rows}
    assert side_by_side["teacher listwise nDCG@10 vs qrels"][1:] == ["1.000", "8 rows", f"{REVERSED_NDCG:.3f}", "8 rows"]


def test_rows_missing_fields_give_na_with_a_reason():
    """Rows of a shape the audit does not know: every figure is n/a, none raises."""
    data = AuditData(
        dataset="odd", version=1, spec={}, manifest={}, code_version="x", published_at="", snapshots=[],
        rows={"listwise": [{"row_id": "r1", "qid": "q", "domain": "d", "final_list": ["a"]}],
              "negatives": [{"row_id": "n1", "qid": "q", "domain": "d"}],
              "mixed_cot": [{"row_id": "m1", "qid": "q", "domain": "ko"}]},
        rejected={}, rejections=[], qrels={}, retriever_orders={}, calls=[])
    audit = compute_audit(data)
    assert not section(audit, "qrels").available
    assert section(audit, "consistency").notes == ["not in this version: no ranked listwise rows"]
    assert headline(audit, "answer_accuracy").value is None
    assert "no row has an answer check" in headline(audit, "answer_accuracy").note
    assert any("no mixed_cot row carries a target_ratio" in n for n in section(audit, "language").notes)
    assert any("records no teachers" in n for n in section(audit, "cost").notes)
    assert headline(audit, "cost_usd").note == "the manifest records no cost"
