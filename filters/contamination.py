"""Decontamination: word n-gram overlap with evaluation sets (default 13-grams).

Texts are normalised (NFKC, lower case, punctuation dropped) and cut into word n-grams;
a row whose key text shares at least `min_matches` n-grams with any evaluation item is
rejected, with the eval set, the eval item and the matched n-gram in the reason.

A text with fewer than n words (a short query) is one gram on its own, compared whole with
the whole short eval items, once it has at least `short_min_words` words; shorter texts
are never matched (too many innocent collisions). A short eval text embedded in a longer
row text is not detected.

Evaluation sets: BEIR folders (corpus.jsonl: title + text, queries.jsonl) or lists of
texts — to use an HF dataset, pass its text column via `EvalSet.from_texts`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from filters.base import KEEP, Filter, Verdict, register
from filters.text import Row, RowKey, describe_key, key_text, word_ngrams, word_tokens

BEIR_PARTS = ("queries", "corpus")


@dataclass(frozen=True)
class EvalSet:
    """Named evaluation texts with ids (`source` records where they came from)."""

    name: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    source: str = "texts"

    @classmethod
    def from_texts(cls, name: str, texts: Sequence[str], ids: Sequence[str] | None = None) -> EvalSet:
        ids = tuple(map(str, ids)) if ids is not None else tuple(str(i) for i in range(len(texts)))
        if len(ids) != len(texts):
            raise ValueError(f"eval set {name!r}: {len(ids)} ids for {len(texts)} texts")
        return cls(name, ids, tuple(texts))

    @classmethod
    def from_beir(cls, folder: str | Path, name: str | None = None, parts: Sequence[str] = BEIR_PARTS) -> EvalSet:
        """Read `queries.jsonl` and/or `corpus.jsonl` of a BEIR folder; ids are `queries/<_id>`, `corpus/<_id>`."""
        folder = Path(folder)
        ids, texts = [], []
        for part in parts:
            if part not in BEIR_PARTS:
                raise ValueError(f"unknown BEIR part {part!r}; use {BEIR_PARTS}")
            for item_id, text in _read_beir_part(folder / f"{part}.jsonl"):
                ids.append(f"{part}/{item_id}")
                texts.append(text)
        return cls(name or folder.name, tuple(ids), tuple(texts), source=str(folder))

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "items": len(self.ids)}


def _read_beir_part(path: Path) -> Iterator[tuple[str, str]]:
    if not path.exists():
        raise FileNotFoundError(f"evaluation set file not found: {path}")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                yield str(item["_id"]), " ".join(filter(None, (item.get("title"), item.get("text"))))
            except (json.JSONDecodeError, KeyError) as error:
                raise ValueError(f"{path}:{number}: not a BEIR record ({error})") from error


@dataclass(frozen=True)
class ContaminationMatch:
    """One n-gram a text shares with an evaluation item."""

    eval_set: str
    eval_id: str
    ngram: str


class NGramIndex:
    """Hash table from every evaluation n-gram to the first eval item holding it.

    Memory is about 100 bytes per distinct eval n-gram (~20 MB for 200k passages of 100 words).
    """

    def __init__(self, eval_sets: Sequence[EvalSet], n: int = 13, short_min_words: int = 8) -> None:
        self.n = n
        self.short_min_words = short_min_words
        self.items: list[tuple[str, str]] = []
        self.table: dict[int, int] = {}
        for eval_set in eval_sets:
            for item_id, text in zip(eval_set.ids, eval_set.texts):
                self.items.append((eval_set.name, item_id))
                for gram in self.grams(text):
                    self.table.setdefault(hash(gram), len(self.items) - 1)

    def grams(self, text: str) -> list[str]:
        tokens = word_tokens(text)
        if len(tokens) < min(self.n, self.short_min_words):
            return []
        return word_ngrams(tokens, self.n)

    def matches(self, text: str) -> tuple[list[ContaminationMatch], int]:
        """The text's n-grams found in the index, and how many n-grams the text has."""
        grams = self.grams(text)
        found = []
        for gram in grams:
            item = self.table.get(hash(gram))
            if item is not None:
                found.append(ContaminationMatch(*self.items[item], gram))
        return found, len(grams)


def _as_eval_set(spec: str | Path | EvalSet) -> EvalSet:
    return spec if isinstance(spec, EvalSet) else EvalSet.from_beir(spec)


@register
@dataclass
class NGramContaminationFilter(Filter):
    """Reject rows sharing word n-grams with evaluation sets.

    Args:
        eval_sets: BEIR folder paths and/or `EvalSet` objects (required).
        key: what to check (default "query"; passages: ("title", "text")); see
            `filters.text.key_text`.
        n: n-gram length in words (default 13).
        short_min_words: texts shorter than n words are matched whole if they have at
            least this many words (default 8).
        min_matches: shared n-grams needed to reject (default 1).

    Reason: `ngram_overlap:<eval set>:<eval item id>:"<first matched n-gram>"`; score: the
    share of the row's n-grams found in the evaluation sets.
    """

    name: ClassVar[str] = "contamination"
    eval_sets: Sequence[str | Path | EvalSet]
    key: RowKey = "query"
    n: int = 13
    short_min_words: int = 8
    min_matches: int = 1
    index: NGramIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n < 1 or self.min_matches < 1 or self.short_min_words < 1:
            raise ValueError("contamination: n, short_min_words and min_matches must be >= 1")
        if isinstance(self.eval_sets, (str, Path, EvalSet)):
            self.eval_sets = [self.eval_sets]
        self.eval_sets = [_as_eval_set(spec) for spec in self.eval_sets]
        self.index = NGramIndex(self.eval_sets, self.n, self.short_min_words)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "key": describe_key(self.key)}

    def check(self, row: Row) -> Verdict:
        found, total = self.index.matches(key_text(row, self.key))
        if len(found) < self.min_matches:
            return KEEP
        first = found[0]
        return Verdict(False, f'ngram_overlap:{first.eval_set}:{first.eval_id}:"{first.ngram}"', len(found) / total)


def find_contamination(texts: Sequence[str], index: NGramIndex) -> list[tuple[int, ContaminationMatch]]:
    """Every (text position, match) pair: the full listing for an audit report."""
    return [(position, match) for position, text in enumerate(texts) for match in index.matches(text)[0]]


__all__ = ["ContaminationMatch", "EvalSet", "NGramContaminationFilter", "NGramIndex", "find_contamination"]
