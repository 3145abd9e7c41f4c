"""A small BEIR folder whose passages carry ``score=<n>`` (the fake teacher ranks by it), and
build specs pointing at an OpenAI-compatible teacher: for the teacher tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_scored_beir(folder: Path, queries: int = 12, per_query: int = 4) -> Path:
    """``queries`` queries, each with ``per_query`` passages only it matches (BM25 finds them)."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus, topics, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for q in range(queries):
        topic = f"topic{q}word"
        topics.append({"_id": f"q{q}", "text": f"What is known about {topic}?"})
        for i in range(per_query):
            score = (q * 7 + i * 3) % 11
            corpus.append({"_id": f"d{q}-{i}", "title": f"{topic} note {i}",
                           "text": f"This note {i} discusses {topic} at length; score={score}."})
            qrels.append(f"q{q}\td{q}-{i}\t{1 if i == 0 else 0}")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in topics))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


def write_spec(folder: Path, source: Path, teacher: dict, dataset: str = "teachers",
               queries: int | None = None) -> Path:
    """A listwise build of every list in one window, against ``teacher``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "dataset": dataset,
        "output": str(folder / "out"),
        "sources": [{"name": "scored", "domain": "test", "path": str(source),
                     **({"queries": queries} if queries else {})}],
        "candidates": {"method": "bm25", "k": 4},
        "listwise": {"window": 4, "passage_tokens": 40},
        "teacher": {"backend": "openai", "model": "fake-teacher", **teacher},
        "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 200, "seed": 3},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
