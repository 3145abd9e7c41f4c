"""Typed exports: structured fields stay structs and lists in Parquet and ``datasets``
features, and a field null in every row gets a real type, never Arrow's ``null``."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.formats.registry import VERDICTS_TYPE, arrow_table, write_hf, write_parquet

ROWS = [
    {"row_id": "a", "reason": None, "reference_answers": None, "failed_gates": [],
     "filter_verdicts": {"consistency_ndcg": {"keep": True, "reason": None, "score": 0.8},
                         "injection": {"keep": True, "reason": "injection_flag", "score": None}},
     "negatives": [{"docid": "d1", "verdict": None, "judge_error": None, "score": 0.5}]},
    {"row_id": "b", "reason": None, "reference_answers": None, "failed_gates": [], "filter_verdicts": {},
     "negatives": [{"docid": "d2", "verdict": "relevant", "judge_error": None, "score": 1}]},
]


def null_types(arrow_type: pa.DataType) -> bool:
    if pa.types.is_null(arrow_type):
        return True
    if pa.types.is_struct(arrow_type):
        return any(null_types(field.type) for field in arrow_type)
    if pa.types.is_list(arrow_type):
        return null_types(arrow_type.value_type)
    return False


def test_typed_parquet_and_datasets_features(tmp_path):
    import datasets

    table = arrow_table(ROWS, "pointwise")
    assert not any(null_types(field.type) for field in table.schema), table.schema
    assert table.schema.field("reason").type == pa.string()
    assert table.schema.field("reference_answers").type == pa.list_(pa.string())  # declared by the kind
    assert table.schema.field("failed_gates").type == pa.list_(pa.string())  # empty lists: string items
    assert table.schema.field("filter_verdicts").type == VERDICTS_TYPE
    negatives = table.schema.field("negatives").type.value_type
    assert negatives.field("judge_error").type == pa.string() and negatives.field("score").type == pa.float64()
    assert table.column("filter_verdicts").to_pylist() == [
        [{"filter": "consistency_ndcg", "keep": True, "reason": None, "score": 0.8},
         {"filter": "injection", "keep": True, "reason": "injection_flag", "score": None}], []]

    path = write_parquet(ROWS, tmp_path / "rows.parquet", "pointwise")
    assert pq.read_table(path).schema.equals(table.schema)
    features = datasets.load_from_disk(str(write_hf(ROWS, tmp_path / "hf", "pointwise"))).features
    verdicts = features["filter_verdicts"]
    assert (getattr(verdicts, "feature", None) or verdicts[0])["score"] == datasets.Value("float64")  # list of structs
    assert features["reason"] == datasets.Value("string")
    assert "null" not in repr(features)
