"""A build you can follow in Prefect: its stages log through the run logger, and it
publishes its summary as a table and a Markdown artifact."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher

pytestmark = pytest.mark.slow

NOT_RELEVANT = "<think>A different condition.</think> <answer>not relevant</answer>"


def test_build_logs_each_stage_and_publishes_its_summary_as_artifacts(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId

    from prefect.logging.handlers import APILogWorker

    from flows.build import build_flow

    with FakeTeacher(mode="fixed", fixed_content=NOT_RELEVANT, model="fn-judge-fake") as teacher:
        spec = {
            "dataset": "Observed_Negatives", "output": str(tmp_path / "out"),
            "sources": [{"name": "demo-medicine", "domain": "medicine",
                         "path": str(REPO / "examples" / "demo" / "medicine"), "queries": 3}],
            "kinds": ["negatives"],
            "negatives": {"retrievers": ["bm25"], "depth": 8, "num_negatives": 2, "positive_fraction": 0.7},
            "teacher": {"backend": "openai", "base_url": teacher.base_url, "model": teacher.model},
            "sampling": {"temperature": 0.0, "max_tokens": 128, "seed": 5},
        }
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        run_loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
        levels = [logger.level for logger in run_loggers]
        for logger in run_loggers:  # conftest quiets Prefect to WARNING; a user sees INFO
            logger.setLevel(logging.INFO)
        try:
            state = build_flow(str(path), return_state=True)
        finally:
            for logger, level in zip(run_loggers, levels):
                logger.setLevel(level)
    summary = state.result()
    run_id = state.state_details.flow_run_id
    APILogWorker.drain_all(timeout=30)  # run logs reach the API from a background worker
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[run_id])))]
        artifacts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["build-observed-negatives", "build-observed-negatives-summary"])))}
    assert any(m.startswith("source demo-medicine: snapshot ") for m in logs), logs
    accepted = summary["counts"]["negatives"]
    assert f"stage negatives: {accepted} of {summary['attempted']['negatives']} rows accepted" in "\n".join(logs)
    assert any(m.startswith(f"published Observed_Negatives v{summary['version']}") for m in logs)
    assert any(m.startswith(f"exported Observed_Negatives v{summary['version']}: ") for m in logs)

    table, markdown = artifacts["build-observed-negatives"], artifacts["build-observed-negatives-summary"]
    assert table.type == "table" and markdown.type == "markdown"
    listed = json.loads(table.data) if isinstance(table.data, str) else table.data
    rows = {row["what"]: row["value"] for row in listed}
    assert rows["outcome"] == "published" and rows["version"] == f"v{summary['version']}"
    assert rows["negatives rows accepted / attempted"] == f"{accepted} / {summary['attempted']['negatives']}"
    assert rows["teacher calls made"] == summary["cost"]["calls_made"] > 0
    assert [row["value"] for row in listed if row["what"] == "export"] == summary["outputs"]
    assert markdown.data.startswith("# Build of Observed_Negatives: published")
    assert "| cost (USD) | n/a (no pricing in the spec) |" in markdown.data
