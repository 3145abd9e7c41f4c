"""Filters for synthrank builds: self-consistency, dedup, quality, contamination, injection.

Every filter is registered by name; a build spec lists them (see `filters.base`):

    from filters import build_chain, run_chain, describe_chain
    chain = build_chain([{"name": "consistency_ndcg", "alpha": 0.4}, {"name": "minhash_dedup"}])
    result = run_chain(chain, rows)   # result.kept, result.rejected, result.flagged, result.steps

Registered names: consistency_ndcg, consistency_agreement (filters.consistency);
exact_dedup, minhash_dedup, semantic_dedup (filters.dedup); contamination
(filters.contamination); length, truncated, empty_reasoning, repetition, language
(filters.quality); injection (filters.injection).
"""

from filters.base import (
    ChainResult,
    Filter,
    Flag,
    Rejection,
    Verdict,
    build_chain,
    build_filter,
    describe_chain,
    registered_filters,
    run_chain,
)

__all__ = [
    "ChainResult",
    "Filter",
    "Flag",
    "Rejection",
    "Verdict",
    "build_chain",
    "build_filter",
    "describe_chain",
    "registered_filters",
    "run_chain",
]
