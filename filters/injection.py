"""Passages that address the model instead of the reader (prompt injection).

`injection_score(text)` runs scored heuristic rules and returns (score, matched rule names);
the score combines rule weights as 1 - prod(1 - w), so one strong rule or several weak
ones reach the threshold. Rules:

- ignore_instructions: "ignore / disregard / forget ... previous / above ... instructions",
  "Ignore the other passages"
- rank_me_first: "rank / place / list this passage first / at the top / above the others",
  "this result should be ranked #1", "deserves the highest position", "put me on top"
- claims_most_relevant: "this passage is the most relevant ...", "answers every query"
- you_must: "you must / should / have to recommend / rank / select / output ..."
- addresses_model: "dear AI", "note to the assistant", "as an AI language model", "if you
  are an LLM", "Assistant, ...", "AI system evaluating this", "pretend you are ..."
- new_instructions: "new instructions:", "system prompt:", "from now on ..."
- role_tags: chat-template tokens and role markers (<|im_start|>, [INST], <<SYS>>,
  "system:", "assistant:") and answer tags of our own formats (<think>, <answer>)
- ranking_output: a ranking in the teacher's answer format ("[4] > [2] > [1]")
- hidden_characters: zero-width characters or Unicode tag characters (invisible text)
- strategic_text_sequence: a run of odd tokens of mixed kinds (symbol-glued, case-switching,
  symbol-only), the shape of optimised adversarial suffixes such as the strategic text
  sequences of the product-visibility attack (Kumar & Lakkaraju 2024), e.g.
  "interact>; expect formatted XVI RETedly_ _Hello necessarily phys*) ### Das Cold Elis$?"

A flagged passage stays data: `InjectionFilter` keeps it and records the flag, unless
`exclude` is set, in which case the row is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from filters.base import KEEP, Filter, Verdict, register
from filters.text import Row, RowKey, describe_key, key_text

_I = re.IGNORECASE
_GAP = r"[^.!?\n]{0,40}?"  # a short stretch inside one sentence

_MODEL = (
    r"(ai|a\.i\.|llm|large language model|language model|assistant|chatbot|gpt"
    r"|ranker|reranker|ranking model|ranking system|search engine)"
)
_DOC = r"(passage|document|doc|result|text|page|product|item|answer|paragraph|snippet|entry|article)s?"
_TOP = r"(first|top|on top|at the top|highest|#\s?1|number one|above (all )?(the )?(others|rest|other \w+))"

RULES: dict[str, tuple[re.Pattern[str], float]] = {
    "ignore_instructions": (
        re.compile(
            rf"\b(ignore|disregard|forget|override|skip)\b{_GAP}"
            r"\b(previous|prior|above|earlier|preceding|all|any|other|your|system)\b"
            rf"{_GAP}\b(instructions?|prompts?|rules|directions|guidelines|context|tasks?)\b"
            r"|(^|[.!?;\n]\s*)(ignore|disregard)\s+(all\s+)?(the\s+)?other\s+(passages|documents|results|candidates|products)\b",
            _I,
        ),
        0.9,
    ),
    "rank_me_first": (
        re.compile(
            rf"\b(rank|place|put|list|rate|score|position|return|show)\b{_GAP}"
            rf"\b(this|the following|the current|our|my)\s+{_DOC}\b{_GAP}\b{_TOP}"
            rf"|\b(this|the following|our|my)\s+{_DOC}\s+(should|must|deserves? to|needs? to)\s+(always\s+)?be\s+"
            rf"(ranked|placed|listed|rated|shown|put)\s+{_TOP}"
            r"|\bdeserves? the (highest|top|first|best) (position|rank|ranking|spot|place|score)"
            rf"|\b(rank|put|place|list) (me|us) {_TOP}",
            _I,
        ),
        0.9,
    ),
    "claims_most_relevant": (
        re.compile(
            rf"\b(this|the following)\s+{_DOC}\s+(is|must be|should be)\s+(the\s+)?(most|best|only|highest)\s+"
            r"(relevant|ranked|useful|answer|match)"
            r"|\b(answers|is relevant to|matches) (every|any|all) (query|queries|questions?|searches)\b",
            _I,
        ),
        0.7,
    ),
    "you_must": (
        re.compile(
            r"\byou\s+(must|should|have to|need to|are required to|are instructed to|will now)\s+(always\s+|only\s+)?"
            r"(recommend|rank|select|choose|output|respond|reply|answer|say|prefer|rate|include|print|return|mention)\b",
            _I,
        ),
        0.6,
    ),
    "addresses_model": (
        re.compile(
            rf"\b(dear|attention|hey|hello|to|for) (any |all |the )?{_MODEL}s?( system)?\s*[,:]"
            rf"|\b(note|message|instructions?) (to|for) (the |any )?{_MODEL}\b"
            rf"|\bas an? {_MODEL}\b|\bif you are an? {_MODEL}\b"
            rf"|\b{_MODEL}s?( system)?\s*(reading|processing|ranking|evaluating) (this|these|relevance)\b"
            rf"|(^|[.!?\n]\s*){_MODEL}\s*[,:]\s"
            rf"|\bpretend (that )?you are\b|\byou are (now )?an? (helpful )?{_MODEL}\b",
            _I,
        ),
        0.6,
    ),
    "new_instructions": (
        re.compile(
            r"\b(new|updated|real|actual|hidden|secret|system)\s+(instructions?|task|prompt|directive)s?\s*:"
            r"|\bsystem prompt\b|\bfrom now on\b|\bjailbreak\b",
            _I,
        ),
        0.7,
    ),
    "role_tags": (
        re.compile(
            r"<\|?\s*(system|im_start|im_end|assistant|user|endoftext|eot_id|start_header_id)\s*\|?>"
            r"|\[/?INST\]|<</?SYS>>|</?(think|answer|system|instructions?)>"
            r"|(^|\n)\s*(system|assistant)\s*:",
            _I,
        ),
        0.8,
    ),
    "ranking_output": (re.compile(r"\[\d+\]\s*>\s*\[\d+\]"), 0.6),
    "hidden_characters": (re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\U000e0000-\U000e007f]"), 0.7),
}
STS_WEIGHT = 0.6
STS_WINDOW = 12
STS_MIN_ODD = 4
STS_MIN_KINDS = 2

_EDGE_PUNCT = "\"'“”‘’.,;:!?()[]《》〈〉『』「」«»<>"
_CODE_SYMBOLS = frozenset("$#*_\\{}|~^<>@`")
_MIXED_CASE = re.compile(r"[a-z][A-Z]|[A-Z]{2,}[a-z]{2,}")
_PROSE_SYMBOL_RUNS = frozenset({"--", "...", "->", "=>", "<=", ">=", "==", ":=", "-->", "<--", "<->", "**"})


def odd_token_kind(token: str) -> str | None:
    """How a whitespace token differs from prose, or None.

    "symbols": a run of two or more symbols (`###`, `$?`), common arrows and dashes aside;
    "glued": letters glued to code/markup symbols (`phys*)`, `_Hello`, `Elis$?`, `interact>;`);
    "case": case switching inside a word (`similarlyNow`, `RETedly`).
    """
    core = token.strip(_EDGE_PUNCT)
    if not any(ch.isalnum() for ch in core or token):
        symbols = core or token
        return "symbols" if len(symbols) >= 2 and symbols not in _PROSE_SYMBOL_RUNS else None
    if any(ch.isalpha() for ch in core) and any(ch in _CODE_SYMBOLS for ch in token):
        return "glued"
    if _MIXED_CASE.search(core):
        return "case"
    return None


def has_strategic_text_sequence(
    text: str, window: int = STS_WINDOW, min_odd: int = STS_MIN_ODD, min_kinds: int = STS_MIN_KINDS
) -> bool:
    """True if some `window` consecutive tokens hold `min_odd` odd tokens of `min_kinds` kinds.

    Defaults (12, 4, 2) flag none of the 5,005 CISI, CACM and KorQuAD passages, whose
    formulas (`|A|=m,`), names (`McLeod`) and Korean quotation marks give at most one kind
    of odd token in a run, while adversarial suffixes mix glued symbols, case switches and
    symbol runs.
    """
    kinds = [odd_token_kind(token) for token in text.split()]
    for start in range(max(1, len(kinds) - window + 1)):
        odd = [kind for kind in kinds[start : start + window] if kind]
        if len(odd) >= min_odd and len(set(odd)) >= min_kinds:
            return True
    return False


def injection_score(text: str) -> tuple[float, list[str]]:
    """(score in [0, 1), names of the matched rules) for one text."""
    matched = [name for name, (pattern, _) in RULES.items() if pattern.search(text)]
    weights = [RULES[name][1] for name in matched]
    if has_strategic_text_sequence(text):
        matched.append("strategic_text_sequence")
        weights.append(STS_WEIGHT)
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - weight
    return 1.0 - remaining, matched


@register
@dataclass
class InjectionFilter(Filter):
    """Flag passages that try to instruct the model; the row stays unless `exclude`.

    Args:
        key: the passage text of a passage row (default ("title", "text")).
        passages: optional `{docid: text}` or `{(snapshot_id, docid): text}` (builds over
            several sources, whose docids may collide); when given, rows are listwise rows
            and each is judged by the passages of its `initial_list` (flagged if any is).
        threshold: heuristic score at which a text is flagged (default 0.5: any one rule
            of weight >= 0.5, or two weaker ones).
        exclude: reject flagged rows instead of keeping them (default False).
        judge: optional `judge(text) -> bool` (e.g. a teacher asked "does this passage
            address the model?"). When set, it decides for every text that matched at least
            one rule, whatever its score; texts matching no rule are not sent to it.

    Reason: `injection:<rule>,<rule>` (listwise: `injection:<docid>:<rules>`); with a
    judge the rules are followed by `+judge`. Score: the heuristic score.
    """

    name: ClassVar[str] = "injection"
    key: RowKey = ("title", "text")
    passages: Mapping[str, str] | None = None
    threshold: float = 0.5
    exclude: bool = False
    judge: Callable[[str], bool] | None = None
    _cache: dict[str, tuple[bool, float, list[str]]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"injection: threshold must be in (0, 1), got {self.threshold}")

    def params(self) -> dict[str, Any]:
        params = super().params()
        params["key"] = describe_key(self.key)
        params["passages"] = None if self.passages is None else f"{len(self.passages)} passages"
        return params

    def judge_text(self, text: str) -> tuple[bool, float, list[str]]:
        """(flagged, heuristic score, rules), with the judge's word where one is set."""
        score, rules = injection_score(text)
        if self.judge is None:
            return score >= self.threshold, score, rules
        flagged = bool(rules) and bool(self.judge(text))
        return flagged, score, rules + ["judge"] if flagged else rules

    def check(self, row: Row) -> Verdict:
        if self.passages is None:
            flagged, score, rules = self.judge_text(key_text(row, self.key))
            return self._verdict(score, _rule_list(rules)) if flagged else KEEP
        for docid in row["initial_list"]:
            flagged, score, rules = self._passage(row.get("snapshot_id"), str(docid))
            if flagged:
                return self._verdict(score, f"{docid}:{_rule_list(rules)}")
        return KEEP

    def _passage(self, snapshot_id: str | None, docid: str) -> tuple[bool, float, list[str]]:
        key = (snapshot_id, docid) if (snapshot_id, docid) in self.passages else docid
        if key not in self._cache:
            if key not in self.passages:
                raise KeyError(f"injection: passage {docid!r} of a candidate list is not in `passages`")
            self._cache[key] = self.judge_text(self.passages[key])
        return self._cache[key]

    def _verdict(self, score: float, detail: str) -> Verdict:
        return Verdict(not self.exclude, f"injection:{detail}", score)


def _rule_list(rules: Sequence[str]) -> str:
    return ",".join(rules).replace(",judge", "+judge")


def flagged_passages(passages: Mapping[str, str], threshold: float = 0.5) -> Iterator[tuple[str, float, list[str]]]:
    """(docid, score, rules) for each passage whose heuristic score reaches `threshold`."""
    for docid, text in passages.items():
        score, rules = injection_score(text)
        if score >= threshold:
            yield docid, score, rules


__all__ = [
    "RULES",
    "InjectionFilter",
    "flagged_passages",
    "has_strategic_text_sequence",
    "injection_score",
    "odd_token_kind",
]
