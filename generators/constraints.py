"""Grammars that constrain a teacher's answer to the listwise or pointwise shape (GBNF).

The same text serves llama.cpp (``grammar``) and vLLM (``structured_outputs: {grammar}``).

Listwise: for windows of up to ``EXACT_LIMIT`` passages the grammar admits only
permutations: one rule per set of identifiers already used (2^n rules). Larger windows get
a format-only grammar. Pointwise: identifiers in increasing order (so never repeated), or
``none``. Strict validation afterwards checks every answer either way.
"""

from __future__ import annotations

EXACT_LIMIT = 10


def reasoning_budget(size: int, max_tokens: int) -> int:
    """Characters of reasoning that leave room for the answer within ``max_tokens``
    (about 6 tokens per identifier; 2 characters per token, because a small model's
    degenerate reasoning — repeated ``[1]``s — measured 2.2 on SmolLM2-135M; reasoning
    denser than that can still run out of tokens, and the answer is then rejected as truncated)."""
    return max(1, 2 * (max_tokens - 6 * size - 16))


def ranking_grammar(size: int, max_reasoning_chars: int = 1200) -> str:
    """GBNF for ``<think>…</think> <answer>[i] > [j] > …</answer>`` over ids 1..size."""
    head = [
        'root ::= "<think>" think "</think> <answer>" ranking "</answer>"',
        f"think ::= [^<]{{1,{max_reasoning_chars}}}",
    ]
    body = _exact_permutations(size) if size <= EXACT_LIMIT else _any_ids(size)
    return "\n".join(head + body) + "\n"


def positives_grammar(size: int, max_reasoning_chars: int = 1200) -> str:
    """GBNF for ``<think>…</think> <answer>[i], [j], …</answer>`` (increasing ids in 1..size)
    or ``<answer>none</answer>``."""
    rules = [
        'root ::= "<think>" think "</think> <answer>" ids "</answer>"',
        f"think ::= [^<]{{1,{max_reasoning_chars}}}",
        'ids ::= "none" | ' + " | ".join(f'"[{i}]" after{i}' for i in range(1, size + 1)),
    ]
    for i in range(1, size + 1):
        rest = [f'", [{j}]" after{j}' for j in range(i + 1, size + 1)]
        rules.append(f"after{i} ::= " + " | ".join([*rest, '""']))
    return "\n".join(rules) + "\n"


def _exact_permutations(size: int) -> list[str]:
    full = (1 << size) - 1
    rules = ["ranking ::= " + " | ".join(f'"[{i + 1}]" s{1 << i}' for i in range(size))]
    for used in range(1, full):
        rest = [f'" > [{i + 1}]" s{used | 1 << i}' for i in range(size) if not used & (1 << i)]
        rules.append(f"s{used} ::= " + " | ".join(rest))
    rules.append(f's{full} ::= ""')
    return rules


def _any_ids(size: int) -> list[str]:
    ident = " | ".join(f'"[{i}]"' for i in range(1, size + 1))
    return [f"ranking ::= id (\" > \" id){{{size - 1}}}", f"id ::= {ident}"]
