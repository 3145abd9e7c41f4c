"""A stub teacher that knows the human judgments: a loopback OpenAI-compatible server (the
`FakeTeacher`) whose listwise rankings and pointwise positives follow a collection's qrels,
with switchable failure modes. It is a stub, standing in for a real teacher LLM so that
label-quality filters can be measured against planted, known noise; nothing here is a model.

Behaviour of the good part (`ties`):
- ``random``: passages ordered by grade, equally graded ones (most of a 20-passage list is
  unjudged, grade 0) in a different random order every sample (seeded by the request);
- ``stable``: the same, equal grades always in the same order (a fixed key per passage);
- ``top_correct``: the stable order for the first ``top_m`` places, the rest at random.

``boundary_swap``: the share of good answers that swap the last relevant passage with the
first unrelated one (a near miss of an imperfect but good teacher).

A share ``noise`` of the queries (chosen by a hash of the query text, so the bench knows
which) is answered with a failure mode instead (`failure`):
- ``random``: a random permutation; ``lazy``: the presented order; ``position_biased``:
  the good ranking with the first-presented passage moved to the top.

Pointwise prompts (``Identify the passages that are relevant``) are answered with the
passages of grade > 0, always correctly: the noise is planted in the listwise rankings.

Passages are recognised by their text as the prompt shows it (``[i] <text>`` lines); the
query by the text after the prompt's last ``Search Query: ``.
"""

from __future__ import annotations

import random
import re
import zlib
from pathlib import Path

import yaml

from generators.listwise import clean_passage
from tests.fake_teacher import FakeTeacher, _passages
from warehouse.db import Warehouse
from warehouse.snapshots import ingest, load_passages, load_qrels, load_queries

TIES = ("random", "stable", "top_correct")
FAILURES = ("random", "lazy", "position_biased")

_LINE = re.compile(r"^\[(\d+)\] (?!>)(.*)$", re.MULTILINE)
_QUERY_MARK = "Search Query: "


def hash_share(text: str, seed: int) -> float:
    """A stable number in [0, 1) for a text (which queries get the failure mode)."""
    return zlib.crc32(f"{seed}:{text}".encode()) / 2**32


class LabelTeacher(FakeTeacher):
    """Stub teacher answering from judgments ``{query text: {passage text: grade}}``.

    Args:
        judgments: per query text (as the prompt shows it), passage text (as the prompt shows
            it, after cleaning) -> grade; passages not listed have grade 0.
        ties: "random", "stable" or "top_correct" (see the module doc).
        failure: "random", "lazy" or "position_biased", for a share ``noise`` of the queries.
        noise: share of queries answered with ``failure`` (0 = none).
        top_m: places kept in order by "top_correct".
        boundary_swap: share of good answers with the relevant/unrelated boundary swapped.
        noise_seed: which queries are noisy (hash of seed and query text).
        options: FakeTeacher options (latency_ms, capacity, faults, ...).
    """

    def __init__(self, judgments: dict[str, dict[str, int]], *, ties: str = "random", failure: str = "random",
                 noise: float = 0.0, top_m: int = 5, boundary_swap: float = 0.0, noise_seed: int = 0,
                 **options) -> None:
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
        if failure not in FAILURES:
            raise ValueError(f"failure must be one of {FAILURES}, got {failure!r}")
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be within [0, 1], got {noise}")
        super().__init__(mode="score", **options)
        self.judgments = judgments
        self.queries = sorted(judgments, key=len, reverse=True)
        self.ties, self.failure, self.noise, self.top_m, self.noise_seed = ties, failure, noise, top_m, noise_seed
        self.boundary_swap = boundary_swap

    def is_noisy(self, query: str) -> bool:
        """Whether the failure mode answers this query's listwise prompts."""
        return hash_share(query, self.noise_seed) < self.noise

    def _answer(self, messages: list, prompt: str, seed: int | None, index: int) -> tuple[str | None, str]:
        query = self._query_of(prompt)
        grades = self.judgments.get(query, {})
        lines = {int(number): text for number, text in _LINE.findall(prompt)}
        ids = [pid for pid, _ in _passages(prompt)]
        if "Identify the passages that are relevant" in prompt:
            relevant = [pid for pid in ids if grades.get(lines[pid], 0) > 0]
            answer = ", ".join(f"[{pid}]" for pid in relevant) or "none"
            return None, f"<think>{len(relevant)} of {len(ids)} passages are relevant.</think> <answer>{answer}</answer>"
        rng = random.Random(f"{seed}:{index}:{zlib.crc32(prompt.encode())}")
        ranking = self._ranking(ids, {pid: grades.get(lines[pid], 0) for pid in ids},
                                {pid: zlib.crc32(lines[pid].encode()) for pid in ids}, rng, self.is_noisy(query))
        answer = " > ".join(f"[{pid}]" for pid in ranking)
        return None, f"<think>Ranked {len(ids)} passages; [{ranking[0]}] first.</think> <answer>{answer}</answer>"

    def _query_of(self, prompt: str) -> str:
        rest = prompt[prompt.rfind(_QUERY_MARK) + len(_QUERY_MARK):]
        return next((query for query in self.queries if rest.startswith(query)), "")

    def _ranking(self, ids: list[int], grade: dict[int, int], key: dict[int, int], rng: random.Random,
                 noisy: bool) -> list[int]:
        if noisy and self.failure == "random":
            return rng.sample(ids, len(ids))
        if noisy and self.failure == "lazy":
            return list(ids)
        if self.ties == "random" or noisy:  # position_biased lifts a passage above a random-tie ranking
            order = sorted(ids, key=lambda pid: (-grade[pid], rng.random()))
        else:
            order = sorted(ids, key=lambda pid: (-grade[pid], key[pid]))
        if self.ties == "top_correct" and not noisy:
            tail = order[self.top_m:]
            rng.shuffle(tail)
            order = order[:self.top_m] + tail
        if noisy:  # position_biased
            return [ids[0]] + [pid for pid in order if pid != ids[0]]
        relevant = sum(grade[pid] > 0 for pid in order)
        if 0 < relevant < len(order) and rng.random() < self.boundary_swap:
            order[relevant - 1], order[relevant] = order[relevant], order[relevant - 1]
        return order


def judgments_from_warehouse(warehouse: Warehouse, snapshot_ids: list[str], passage_tokens: int = 512
                             ) -> dict[str, dict[str, int]]:
    """``{query text: {cleaned passage text: grade}}`` from the qrels of ingested snapshots,
    with passages cleaned as the listwise and pointwise prompts show them."""
    judgments: dict[str, dict[str, int]] = {}
    for snapshot_id in snapshot_ids:
        passages = load_passages(warehouse, snapshot_id)
        queries = load_queries(warehouse, snapshot_id)
        for qid, grades in load_qrels(warehouse, snapshot_id).items():
            if qid in queries:
                judged = judgments.setdefault(queries[qid][0], {})
                for docid, grade in grades.items():
                    if docid in passages:
                        judged[clean_passage(*passages[docid], passage_tokens)] = grade
    return judgments


def ingest_collections(warehouse_path: Path, data_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Snapshot ids of the collections ``data_dir/<name>`` (BEIR folders), ingested under their names."""
    with Warehouse.open(warehouse_path) as warehouse:
        return [ingest(warehouse, data_dir / name, name, name)[0].snapshot_id for name in names]


def label_build_spec(directory: Path, dataset: str, names: tuple[str, ...], teacher: LabelTeacher, model: str,
                     warehouse_path: Path, chain: list[dict], samples: int = 3) -> Path:
    """A spec file for a build of the ingested collections ``names`` by ``teacher``: pointwise
    positives, then ``samples`` shuffled listwise samples of the BM25 top 20 in one window,
    with the listwise filter ``chain``."""
    spec = directory / f"{dataset}.yaml"
    spec.write_text(yaml.safe_dump({
        "dataset": dataset, "output": str(directory / "out"), "warehouse": str(warehouse_path),
        "sources": [{"name": name, "domain": name} for name in names],
        "kinds": ["pointwise", "listwise"],
        "candidates": {"method": "bm25", "k": 20},
        "listwise": {"window": 20, "samples": samples},
        "teacher": {"backend": "openai", "base_url": teacher.base_url, "model": model, "max_in_flight": 32},
        "filters": {"listwise": chain},
    }))
    return spec
