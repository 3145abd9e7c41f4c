"""`synthrank audit` on the command line, and the audit flow's Prefect artifacts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit_data import build_audit_warehouse
from tests.conftest import REPO


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    return build_audit_warehouse(tmp_path_factory.mktemp("audit-cli"))


def synthrank(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_cli_writes_the_report_and_summary_and_prints_the_headline(warehouse, tmp_path):
    result = synthrank("audit", "ideal@1", "--against", "reversed@1", "--out", str(tmp_path), "-w", str(warehouse))
    assert result.returncode == 0, result.stderr
    assert "teacher listwise nDCG@10 vs qrels" in result.stdout
    html = (tmp_path / "ideal-v1-vs-reversed-v1.html").read_text()
    markdown = (tmp_path / "ideal-v1-vs-reversed-v1.md").read_text()
    assert '<table id="headline">' in html and '<table id="agreement">' in html
    assert "| teacher listwise nDCG@10 vs qrels | 1.000 | 8 rows |" in markdown
    assert "## Comparison: ideal@1 and reversed@1" in markdown
    assert not list(tmp_path.glob("*.partial"))


def test_cli_names_an_unknown_version_and_writes_nothing(warehouse, tmp_path):
    result = synthrank("audit", "ideal@7", "--out", str(tmp_path / "out"), "-w", str(warehouse))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: ideal@7 is not a version, not published"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_audit_flow_publishes_headline_table_and_markdown(prefect_harness, warehouse, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.audit import artifact_key, audit_flow

    result = audit_flow("ideal", str(tmp_path), str(warehouse))
    assert Path(result["html"]).is_file()
    keys = [artifact_key("ideal", "headline"), artifact_key("ideal", "summary")]
    assert keys == ["audit-ideal-headline", "audit-ideal-summary"]
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))}
    assert artifacts[keys[0]].type == "table"
    assert "teacher listwise nDCG@10 vs qrels" in str(artifacts[keys[0]].data)
    assert artifacts[keys[1]].type == "markdown"
    assert artifacts[keys[1]].data.startswith("# Label-quality audit: ideal@1")
