"""Human review against a real Label Studio: build, push, annotate through the API as an
annotator would, pull, rebuild with the people's labels, and check labels and lineage; then
what bad input gets (unreachable server, wrong token, a config edited by hand, an annotation
naming a passage the task does not have, a deleted task)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from generators.labelstudio import LabelStudio, LabelStudioError
from generators.review import project_marker, pull_review, push_review
from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from tests.label_studio import USER, label_studio  # noqa: F401  (the session fixture)
from tests.review_support import publish_review_version
from warehouse.db import Warehouse
from warehouse.diff import diff_versions
from warehouse.exported import open_published
from warehouse.review_audit import human_agreement
from warehouse.versions import list_versions, load_rows

pytestmark = pytest.mark.slow


def write_spec(folder: Path, source: Path, teacher_url: str, override: bool) -> Path:
    spec = {
        "dataset": "cisi-review", "output": str(folder / "out"), "kinds": ["listwise", "negatives"],
        "sources": [{"name": "cisi", "domain": "library-science", "path": str(source), "queries": 3}],
        "candidates": {"method": "bm25", "k": 5},
        "listwise": {"window": 5, "passage_tokens": 40},
        # range_min: 1 sets the best candidate of every query aside as a suspected false negative
        "negatives": {"retrievers": ["bm25"], "depth": 10, "num_negatives": 3, "range_min": 1,
                      "judge": "suspected", "passage_tokens": 40},
        "teacher": {"backend": "openai", "base_url": teacher_url, "model": "fake"},
        "sampling": {"temperature": 0.3, "top_p": 0.9, "max_tokens": 160, "seed": 7},
        "review": {"override": override},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def client_for(server) -> LabelStudio:
    return LabelStudio(server.url, server.token, token_name=f"${server.token_env}")


def project_of(client: LabelStudio, dataset: str, version: int, kind: str) -> dict:
    return next(p for p in client.projects() if p["description"] == project_marker(dataset, version, kind))


def ranker_result(relevant: list[str], top: list[str], rest: list[str]) -> list[dict]:
    return [{"from_name": "relevant", "to_name": "query", "type": "choices", "value": {"choices": relevant}},
            {"from_name": "ranking", "to_name": "passages", "type": "ranker",
             "value": {"ranker": {"top": top, "rest": rest}}}]


def verdict_result(verdict: str) -> list[dict]:
    return [{"from_name": "relevance", "to_name": "candidate", "type": "choices", "value": {"choices": [verdict]}}]


def raw_call(server, method: str, path: str, body=None):
    """What a person does in the Label Studio UI that synthrank's client never does."""
    request = urllib.request.Request(server.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {server.token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)


@pytest.mark.timeout(1800)  # two builds and a Label Studio start: ~16 min on 2 cores shared with 6 other jobs
def test_disputed_labels_go_to_people_and_come_back_as_a_new_version(
        prefect_harness, shared_data, label_studio, tmp_path, capfd):  # noqa: F811
    from flows.build import build_flow
    from flows.report import write_audit

    with FakeTeacher(mode="identity") as teacher:
        first = build_flow(str(write_spec(tmp_path, shared_data / "cisi", teacher.base_url, override=False)))
    warehouse_path, dataset = first["warehouse"], "cisi-review"
    client = client_for(label_studio)

    # push: a random sample of listwise rows and every suspected false negative; twice
    sample = push_review(warehouse_path, dataset, 1, "sample:2", client, ["listwise"])
    suspects = push_review(warehouse_path, dataset, 1, "suspected_false_negatives", client, ["negatives"])
    assert sample.projects["listwise"]["added"] == 2 and sample.projects["listwise"]["created"]
    added_negatives = suspects.projects["negatives"]["added"]
    assert added_negatives >= 3  # at least one suspect per query (range_min: 1)
    again = push_review(warehouse_path, dataset, 1, "sample:2", client, ["listwise"])
    assert again.projects["listwise"] == {**sample.projects["listwise"], "created": False, "added": 0,
                                          "already_present": 2}
    listwise_project = project_of(client, dataset, 1, "listwise")
    negatives_project = project_of(client, dataset, 1, "negatives")
    listwise_tasks = client.tasks(listwise_project["id"])
    negative_tasks = client.tasks(negatives_project["id"])
    assert len(listwise_tasks) == 2 and len(negative_tasks) == added_negatives

    # annotate as a reviewer would: relevant passages and a top two; a verdict per candidate
    expected_lists = {}
    for task in listwise_tasks:
        ids = [p["id"] for p in task["data"]["passages"]]
        client.annotate(task["id"], ranker_result([ids[-1]], [ids[-1], ids[0]], ids[1:-1]))
        expected_lists[task["data"]["synthrank"]["row_id"]] = (ids, task["id"])
    client.annotate(listwise_tasks[0]["id"], ranker_result(["no-such-passage"], [], []))
    deleted = negative_tasks.pop()
    raw_call(label_studio, "DELETE", f"/api/tasks/{deleted['id']}")
    verdicts = {}
    for index, task in enumerate(negative_tasks):
        verdict = "relevant" if index == 0 else "not relevant"
        client.annotate(task["id"], verdict_result(verdict))
        meta = task["data"]["synthrank"]
        verdicts[(meta["row_id"], meta["item"])] = verdict.replace(" ", "_")

    # pull twice: the second read changes nothing; bad annotations and the deleted task are reported
    pulled = pull_review(warehouse_path, dataset, 1, client)
    assert pulled.counts == {"added": 2 + len(negative_tasks), "updated": 0, "unchanged": 0}
    assert any("no-such-passage" in reason and "not in the task" in reason for reason in pulled.skipped)
    assert any(f"task {deleted['id']}" in reason and "deleted on the server" in reason for reason in pulled.skipped)
    assert pull_review(warehouse_path, dataset, 1, client).counts == {
        "added": 0, "updated": 0, "unchanged": 2 + len(negative_tasks)}

    # rebuild: the people's labels replace the teacher's, with lineage
    with FakeTeacher(mode="identity") as teacher:
        second = build_flow(str(write_spec(tmp_path, shared_data / "cisi", teacher.base_url, override=True)))
    assert second["version"] == 2
    with Warehouse.open(warehouse_path, read_only=True) as wh:
        manifest = list_versions(wh, dataset)[-1]["manifest"]
        lists = {row["row_id"]: row for row in load_rows(wh, dataset, 2, "listwise")}
        negatives = {row["row_id"]: row for row in load_rows(wh, dataset, 2, "negatives")}
        figures = {(f.kind, f.name): f for f in human_agreement(wh, dataset, 1)}
    review = manifest["human_review"]
    assert review["kinds"]["listwise"]["rows_changed"] == 2
    assert review["kinds"]["negatives"]["rows_changed"] == len({row_id for row_id, _ in verdicts})
    assert review["annotators"] == [f"{client.whoami()['id']}:{USER}"]
    for row_id, (ids, task_id) in expected_lists.items():
        row = lists[row_id]
        assert row["final_list"][:2] == [ids[-1], ids[0]] and sorted(row["final_list"]) == sorted(ids)
        assert row["relevant_docids"] == [ids[-1]]
        labels = row["human_labels"]
        assert labels["task_id"] == task_id and labels["judged_version"] == 1 and labels["selection"] == "sample:2"
        assert USER in labels["annotator"] and "final_list" in labels["fields"]
    for (row_id, docid), verdict in verdicts.items():
        row = negatives[row_id]
        candidate = next(n for n in row["negatives"] if n["docid"] == docid)
        assert candidate["verdict"] == verdict and candidate["verdict_source"] == "human"
        as_positive = [p for p in row["positives"] if p["docid"] == docid]
        assert as_positive == ([{"docid": docid, "text": candidate["text"], "score": candidate["score"],
                                 "label_source": "human"}] if verdict == "relevant" else [])
        assert verdict == "relevant" or candidate["status"] == "hard_negative"
        assert row["human_labels"]["candidates"][docid]["verdict"] == verdict

    with open_published(warehouse_path) as (store, _):
        diff = {kind.kind: kind for kind in diff_versions(store, dataset, 1, 2).kinds}
    assert sorted(diff["listwise"].human_changed) == sorted(expected_lists)
    assert len(diff["negatives"].human_changed) == review["kinds"]["negatives"]["rows_changed"]

    assert figures[("listwise", "error rate (sample)")].n == 2
    confirmed = figures[("negatives", "suspects people found relevant")]
    assert (confirmed.hits, confirmed.n) == (1, len(negative_tasks))

    # the token reached the server and nowhere else
    written = [p for p in Path(first["warehouse"]).parent.rglob("*") if p.is_file()]
    assert written and not [p for p in written if label_studio.token.encode() in p.read_bytes()]
    captured = capfd.readouterr()
    assert label_studio.token not in captured.out + captured.err

    # the CLI: a pull that finds nothing new, a diff that names the human changes
    cli = run_cli("review", "pull", f"{dataset}@1", "--from", label_studio.url, "--token-env",
                  label_studio.token_env, "-w", warehouse_path)
    assert cli.returncode == 0, cli.stderr
    assert f"0 added, 0 updated, {2 + len(negative_tasks)} unchanged" in cli.stdout
    assert label_studio.token not in cli.stdout + cli.stderr
    shown = run_cli("diff", f"{dataset}@1", "@2", "-w", warehouse_path)
    assert "changed rows carry labels people set" in shown.stdout, shown.stderr
    audit = run_cli("review", "audit", f"{dataset}@1", "-w", warehouse_path)
    assert audit.returncode == 0 and "error rate (sample)" in audit.stdout, audit.stderr

    report = write_audit(warehouse_path, dataset, 1, tmp_path / "audit")
    assert "Against people" in report.markdown_text and "candidate label agreement" in report.markdown_text


def test_bad_server_input_gives_clear_errors_and_stores_nothing(label_studio, tmp_path):  # noqa: F811
    warehouse_path = tmp_path / "wh.duckdb"
    with Warehouse.open(warehouse_path) as warehouse:
        publish_review_version(warehouse, "bad")
    client = client_for(label_studio)

    wrong = run_cli("review", "push", "bad@1", "--select", "disputed", "--to", label_studio.url,
                    "--token-env", "WRONG_TOKEN", "-w", str(warehouse_path), env={"WRONG_TOKEN": "not-the-token"})
    assert wrong.returncode == 2 and "refused the token in $WRONG_TOKEN (HTTP 401)" in wrong.stderr
    assert "not-the-token" not in wrong.stderr + wrong.stdout
    unset = run_cli("review", "pull", "bad@1", "--from", label_studio.url, "--token-env", "NO_SUCH_VARIABLE",
                    "-w", str(warehouse_path))
    assert unset.returncode == 2 and "$NO_SUCH_VARIABLE is not set" in unset.stderr
    with pytest.raises(LabelStudioError, match="cannot reach Label Studio at http://127.0.0.1:9"):
        push_review(warehouse_path, "bad", 1, "disputed", LabelStudio("http://127.0.0.1:9", "x"))

    push_review(warehouse_path, "bad", 1, "disputed", client)
    for task in client.tasks(project_of(client, "bad", 1, "negatives")["id"]):
        client.annotate(task["id"], verdict_result("relevant"))
    listwise = project_of(client, "bad", 1, "listwise")
    edited = listwise["label_config"].replace("Which passages", "Which of these passages")
    raw_call(label_studio, "PATCH", f"/api/projects/{listwise['id']}", {"label_config": edited})

    with pytest.raises(LabelStudioError, match=rf"project {listwise['id']} .* edited by hand"):
        pull_review(warehouse_path, "bad", 1, client)
    with pytest.raises(LabelStudioError, match="edited by hand"):
        push_review(warehouse_path, "bad", 1, "disputed", client)
    with Warehouse.open(warehouse_path, read_only=True) as warehouse:
        assert warehouse.fetch_one("SELECT count(*) FROM human_judgments")[0] == 0


def test_a_personal_access_token_is_exchanged_for_an_access_token(label_studio):  # noqa: F811
    personal = raw_call(label_studio, "POST", "/api/token/")["token"]
    assert personal.count(".") == 2  # a JWT refresh token, not the legacy key
    assert LabelStudio(label_studio.url, personal).whoami()["email"] == USER
