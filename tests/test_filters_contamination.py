"""Decontamination: planted 13-gram overlaps with a BEIR evaluation folder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from filters.base import build_filter, run_chain
from filters.contamination import EvalSet, NGramContaminationFilter, NGramIndex, find_contamination
from filters.text import normalize_text


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")


@pytest.fixture(scope="module")
def collections(shared_data):
    return {
        "cacm": [p for p in read_jsonl(shared_data / "cacm" / "corpus.jsonl") if len(p["text"].split()) >= 60],
        "cisi_queries": read_jsonl(shared_data / "cisi" / "queries.jsonl"),
        "cisi_corpus": read_jsonl(shared_data / "cisi" / "corpus.jsonl"),
    }


@pytest.fixture
def eval_folder(tmp_path, collections):
    """A small BEIR evaluation set: 200 CACM abstracts and 20 CISI queries."""
    folder = tmp_path / "eval-beir"
    folder.mkdir()
    write_jsonl(folder / "corpus.jsonl", collections["cacm"][:200])
    write_jsonl(folder / "queries.jsonl", collections["cisi_queries"][:20])
    return folder


def span(text: str, start: int, length: int) -> str:
    return " ".join(text.split()[start : start + length])


def test_planted_13gram_overlaps_are_found_and_listed(eval_folder, collections):
    rng = random.Random(5)
    eval_passages = collections["cacm"][:200]
    clean_queries = collections["cisi_queries"][20:]
    rows, planted = [], {}
    for i, query in enumerate(clean_queries):
        rows.append({"row_id": f"clean-{i}", "query": query["text"]})
    for i, passage in enumerate(rng.sample(eval_passages, 30)):
        leaked = span(passage["text"], rng.randrange(0, 30), 16)
        rows.append({"row_id": f"leak-{i}", "query": f"Tell me more about this: {leaked} and why it matters"})
        planted[f"leak-{i}"] = f"corpus/{passage['_id']}"
    # a 12-word span is below the 13-gram window: not a match
    near_miss = span(eval_passages[0]["text"], 0, 12)
    rows.append({"row_id": "near-miss", "query": f"Consider {near_miss} today"})
    # a short query copied whole from the eval queries (>= 8 words) is a match
    copied = next(q for q in collections["cisi_queries"][:20] if 8 <= len(q["text"].split()) < 13)
    rows.append({"row_id": "copied-query", "query": copied["text"]})

    result = run_chain([NGramContaminationFilter(eval_sets=[eval_folder])], rows)
    rejected = {r.row["row_id"]: r for r in result.rejected}
    assert set(rejected) == {*planted, "copied-query"}
    for row_id, eval_id in planted.items():
        reason = rejected[row_id].reason
        assert reason.startswith(f"ngram_overlap:eval-beir:{eval_id}:")
        matched = reason.split(":", 3)[3].strip('"')
        assert len(matched.split()) == 13 and matched in normalize_text(rejected[row_id].row["query"])
        assert 0 < rejected[row_id].score <= 1
    assert rejected["copied-query"].reason.startswith(f"ngram_overlap:eval-beir:queries/{copied['_id']}:")
    assert len(result.kept) == len(clean_queries) + 1


def test_passage_rows_and_text_lists(collections):
    eval_set = EvalSet.from_texts("hf-eval", [p["text"] for p in collections["cacm"][:50]])
    leaked = collections["cacm"][7]
    passages = [
        {"docid": "own-1", "title": "A passage", "text": "Preamble. " + leaked["text"]},
        *({"docid": p["_id"], "title": p["title"], "text": p["text"]} for p in collections["cisi_corpus"][:200]),
    ]
    flt = build_filter("contamination", eval_sets=[eval_set], key=["title", "text"])
    result = run_chain([flt], passages)
    assert [r.row["docid"] for r in result.rejected] == ["own-1"]
    assert result.rejected[0].reason.startswith("ngram_overlap:hf-eval:7:")
    assert result.rejected[0].score == pytest.approx(1.0, abs=0.1)
    assert flt.params()["eval_sets"] == [{"name": "hf-eval", "source": "texts", "items": 50}]


def test_find_contamination_lists_every_match(collections):
    text = collections["cacm"][3]["text"]
    index = NGramIndex([EvalSet.from_texts("e", [text])])
    matches = find_contamination(["nothing to see here at all", text], index)
    assert {position for position, _ in matches} == {1}
    assert len(matches) == len(index.grams(text)) == len(normalize_text(text).split()) - 12
    assert all(match.eval_set == "e" and match.eval_id == "0" for _, match in matches)


def test_bad_beir_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="queries.jsonl"):
        EvalSet.from_beir(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "fine"}\n{"text": "no id"}\n')
    (tmp_path / "corpus.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"queries.jsonl:2"):
        EvalSet.from_beir(tmp_path)
