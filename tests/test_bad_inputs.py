"""Bad input through the CLI: every case exits 2 with one line ``error: ...`` (usage errors:
click's usage message), never a traceback, and leaves the warehouse and the output folders
exactly as they were (every file hashed before and after).

Most cases run ``flows.cli.main`` in this process (the entry point ``synthrank`` runs; no
Prefect, no teacher) to keep the table fast; a few run ``python -m flows.cli`` as a real
process, and the cases that need a build run one under the session's Prefect harness.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import duckdb
import pytest
import yaml

from tests.conftest import REPO
from tests.teachers_data import write_scored_beir, write_spec
from tests.warehouse_support import listwise_row, publish
from warehouse.db import Warehouse
from warehouse.exports import publish_exports
from warehouse.sources import SKIP_HINT
from warehouse.versions import list_versions


@dataclass
class Result:
    code: int
    out: str
    err: str


def tree_digest(root: Path) -> dict[str, str]:
    """path -> sha256 (or 'dir') of everything under ``root``."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def synthrank_here(capsys, *args: str) -> Result:
    """``synthrank ARGS`` through the CLI's entry point, in this process."""
    from flows.cli import main

    with mock.patch.object(sys, "argv", ["synthrank", *args]):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def synthrank_process(*args: str, env: dict | None = None, cwd: Path = REPO) -> Result:
    """``python -m flows.cli ARGS`` as a real process."""
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=600)
    return Result(done.returncode, done.stdout, done.stderr)


def write_beir(folder: Path, corpus: str | bytes, queries: str | bytes, qrels: str | None = None) -> Path:
    folder.mkdir(parents=True)
    for name, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if qrels is not None:
        (folder / "qrels").mkdir()
        (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


GOOD_CORPUS = '{"_id": "d1", "title": "t", "text": "a passage"}\n{"_id": "d2", "text": "another"}\n'
GOOD_QUERIES = '{"_id": "q1", "text": "a question"}\n'
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"


def write_yaml(path: Path, value) -> Path:
    path.write_text(yaml.safe_dump(value) if not isinstance(value, str) else value)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A warehouse with ds@1 published and exported, sources and specs good and bad, a plain
    file and a file that is not a DuckDB database."""
    root = tmp_path_factory.mktemp("bad-inputs")
    with Warehouse.open(root / "wh.duckdb") as wh:
        publish(wh, "ds", [listwise_row(i) for i in range(3)])
        publish_exports(wh, "ds", 1, ["listwise"], root / "exports" / "ds")
        publish_exports(wh, "ds", 1, ["listwise"], root / "tampered" / "ds")
    parquet = root / "tampered" / "ds" / "v1" / "listwise.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-9] + b"tampered!")
    (root / "afile.txt").write_text("not a folder\n")
    (root / "notadb.duckdb").write_text("this is not a DuckDB database\n")
    src = root / "src"
    write_beir(src / "good", GOOD_CORPUS, GOOD_QUERIES, QRELS)
    write_beir(src / "empty-corpus", "", GOOD_QUERIES, QRELS)
    write_beir(src / "empty-queries", GOOD_CORPUS, "", QRELS)
    write_beir(src / "bad-json", GOOD_CORPUS + '{"_id": "d3", "text": \n', GOOD_QUERIES)
    write_beir(src / "bom", b"\xef\xbb\xbf" + GOOD_CORPUS.encode(), GOOD_QUERIES)
    write_beir(src / "wrong-type", '{"_id": "d1", "text": 7}\n', GOOD_QUERIES)
    write_beir(src / "not-utf8", GOOD_CORPUS.encode() + b'{"_id": "d3", "text": "caf\xe9"}\n', GOOD_QUERIES)
    write_beir(src / "unknown-qrel", GOOD_CORPUS, GOOD_QUERIES, "query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    write_beir(src / "dup-id", GOOD_CORPUS + '{"_id": "d1", "text": "again"}\n', GOOD_QUERIES)
    good = {"dataset": "x", "output": "out", "sources": [{"name": "good", "domain": "d", "path": "src/good"}]}
    specs = {
        "dotdot": {**good, "dataset": ".."},
        "slash": {**good, "dataset": "a/b"},
        "source-name": {**good, "sources": [{"name": "../up", "domain": "d", "path": "src/good"}]},
        "output-file": {**good, "output": "afile.txt"},
        "output-under-file": {**good, "output": "afile.txt/out"},
        "warehouse-folder": {**good, "warehouse": "src"},
        "unknown-field": {**good, "teacher": {"backend": "embedded", "temprature": 1}},
        "window": {**good, "listwise": {"window": 21}},
        "k": {**good, "candidates": {"k": 0}},
        "share": {**good, "max_failed_share": 1.5},
        "missing-source": {**good, "sources": [{"name": "good", "domain": "d", "path": "src/nope"}]},
        "not-yaml": "dataset: [unclosed\n",
        "a-list": "- 1\n- 2\n",
    }
    for name, spec in specs.items():
        write_yaml(root / f"spec-{name}.yaml", spec)
    (root / "linked-out").mkdir()
    (root / "linked-out" / "x").symlink_to(root / "src")  # OUT/DATASET leads out of OUT
    write_yaml(root / "spec-symlink.yaml", {**good, "output": "linked-out"})
    return root


# (case id, CLI arguments with {w} for the world folder, what the one-line message says)
ONE_LINE_CASES = [
    ("spec dataset '..'", ["build", "{w}/spec-dotdot.yaml"], "dataset: '..' is not a valid name"),
    ("spec dataset with a slash", ["build", "{w}/spec-slash.yaml"], "dataset: 'a/b' is not a valid name"),
    ("spec source name '../up'", ["build", "{w}/spec-source-name.yaml"], "sources[0].name: '../up' is not a valid"),
    ("spec output is a file", ["build", "{w}/spec-output-file.yaml"], "output: {w}/afile.txt is a file, not a folder"),
    ("spec output under a file", ["build", "{w}/spec-output-under-file.yaml"], "afile.txt is a file, not a folder"),
    ("spec warehouse is a folder", ["build", "{w}/spec-warehouse-folder.yaml"], "is a folder, not a DuckDB file"),
    ("spec output/dataset leads outside", ["build", "{w}/spec-symlink.yaml"],
     "{w}/linked-out/x: outside {w}/linked-out; synthrank writes only inside it"),
    ("spec unknown field", ["build", "{w}/spec-unknown-field.yaml"], "unknown field 'teacher.temprature'"),
    ("spec window over 20", ["build", "{w}/spec-window.yaml"], "listwise.window: Input should be less than"),
    ("spec k of 0", ["build", "{w}/spec-k.yaml"], "candidates.k: Input should be greater than"),
    ("spec failed share over 1", ["build", "{w}/spec-share.yaml"], "max_failed_share: Input should be less"),
    ("spec source missing", ["build", "{w}/spec-missing-source.yaml"], "sources[0].path: src/nope does not exist"),
    ("spec not YAML", ["build", "{w}/spec-not-yaml.yaml"], "not valid YAML"),
    ("spec not a mapping", ["build", "{w}/spec-a-list.yaml"], "a spec is a YAML mapping"),
    ("spec file missing", ["build", "{w}/spec-nope.yaml"], "spec file not found"),
    ("ingest into a non-DuckDB file", ["ingest", "{w}/src/good", "--name", "g", "--domain", "d", "-w",
                                       "{w}/notadb.duckdb"], "notadb.duckdb: cannot open it as a DuckDB warehouse"),
    ("ingest into a folder", ["ingest", "{w}/src/good", "--name", "g", "--domain", "d", "-w", "{w}/src"],
     "cannot open it as a DuckDB warehouse"),
    ("ingest empty corpus", ["ingest", "{w}/src/empty-corpus", "--name", "e", "--domain", "d", "-w",
                             "{w}/new/wh.duckdb"], "empty-corpus/corpus.jsonl: no passages"),
    ("ingest empty queries", ["ingest", "{w}/src/empty-queries", "--name", "e", "--domain", "d", "-w",
                              "{w}/new.duckdb"], "empty-queries/queries.jsonl: no queries"),
    ("ingest malformed JSON", ["ingest", "{w}/src/bad-json", "--name", "b", "--domain", "d", "-w",
                               "{w}/new.duckdb"], "bad-json/corpus.jsonl:3: malformed JSON"),
    ("ingest BOM", ["ingest", "{w}/src/bom", "--name", "b", "--domain", "d", "-w", "{w}/new.duckdb"],
     "bom/corpus.jsonl:1: malformed JSON (Unexpected UTF-8 BOM"),
    ("ingest wrong type", ["ingest", "{w}/src/wrong-type", "--name", "b", "--domain", "d", "-w", "{w}/new.duckdb"],
     "wrong-type/corpus.jsonl:1: field 'text' must be a string, got int"),
    ("ingest not UTF-8", ["ingest", "{w}/src/not-utf8", "--name", "b", "--domain", "d", "-w", "{w}/new.duckdb"],
     "not-utf8/corpus.jsonl:3: not valid UTF-8"),
    ("ingest qrels unknown id", ["ingest", "{w}/src/unknown-qrel", "--name", "b", "--domain", "d", "-w",
                                "{w}/new.duckdb"], "qrels name unknown passage id 'nope'"),
    ("ingest duplicate id", ["ingest", "{w}/src/dup-id", "--name", "b", "--domain", "d", "-w", "{w}/new.duckdb"],
     "dup-id/corpus.jsonl:3: duplicate passage id 'd1'"),
    ("ingest missing path", ["ingest", "{w}/src/nope", "--name", "b", "--domain", "d", "-w", "{w}/new.duckdb"],
     "src/nope: no such file or folder"),
    ("ingest name '..'", ["ingest", "{w}/src/good", "--name", "..", "--domain", "d", "-w", "{w}/new.duckdb"],
     "snapshot name: '..' is not a valid name"),
    ("export to a file", ["export", "ds@1", "-f", "parquet", "--out", "{w}/afile.txt", "-w", "{w}/wh.duckdb"],
     "export folder: {w}/afile.txt is a file, not a folder"),
    ("export a bogus kind", ["export", "ds@1", "--kind", "bogus", "-f", "parquet", "--out", "{w}/x", "-w",
                             "{w}/wh.duckdb"], "ds@1 has no kind 'bogus' (its kinds: listwise)"),
    ("export a kind the version lacks", ["export", "ds", "--kind", "pointwise", "-f", "chat", "--out", "{w}/x",
                                         "-w", "{w}/wh.duckdb"], "ds@1 has no kind 'pointwise' (its kinds: listwise)"),
    ("export a bogus format", ["export", "ds@1", "-f", "bogus", "--out", "{w}/x", "-w", "{w}/wh.duckdb"],
     "no export format 'bogus' for kind 'listwise' (known: hf, jsonl, parquet, rankzephyr"),
    ("export an unknown version", ["export", "ds@7", "-f", "parquet", "--out", "{w}/x", "-w", "{w}/wh.duckdb"],
     "ds@7 is not a version, not published"),
    ("export from no warehouse", ["export", "ds@1", "-f", "parquet", "--out", "{w}/x", "-w", "{w}/none.duckdb"],
     "none.duckdb: no warehouse file here"),
    ("export from a non-DuckDB file", ["export", "ds@1", "-f", "parquet", "--out", "{w}/x", "-w",
                                       "{w}/notadb.duckdb"], "cannot open it as a DuckDB warehouse"),
    ("versions of no such dataset", ["versions", "NOSUCH", "-w", "{w}/wh.duckdb"],
     "no dataset 'NOSUCH' in {w}/wh.duckdb (datasets: ds)"),
    ("versions of no such dataset, exports", ["versions", "NOSUCH", "--from-exports", "{w}/exports"],
     "no dataset 'NOSUCH' in exports at {w}/exports (datasets: ds)"),
    ("versions with a path for a name", ["versions", "..", "--from-exports", "{w}/exports"],
     "dataset: '..' is not a valid name"),
    ("versions from no export folder", ["versions", "--from-exports", "{w}/nope"], "{w}/nope: no export folder"),
    ("show a tampered export", ["show", "ds", "--from-exports", "{w}/tampered"],
     "listwise.parquet: sha256 differs from the manifest"),
    ("show a path for a dataset", ["show", "../ds", "-w", "{w}/wh.duckdb"], "dataset: '../ds' is not a valid name"),
    ("show a bad target", ["show", "ds@x", "-w", "{w}/wh.duckdb"], "'ds@x': expected DATASET or DATASET@N"),
    ("diff two datasets", ["diff", "ds@1", "other@2", "-w", "{w}/wh.duckdb"],
     "diff compares two versions of one dataset"),
    ("audit into a file", ["audit", "ds@1", "--out", "{w}/afile.txt", "-w", "{w}/wh.duckdb"],
     "audit folder: {w}/afile.txt is a file, not a folder"),
]


@pytest.mark.parametrize("args, message", [case[1:] for case in ONE_LINE_CASES],
                         ids=[case[0] for case in ONE_LINE_CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(world, capsys, args, message):
    before = tree_digest(world)
    result = synthrank_here(capsys, *(arg.format(w=world) for arg in args))
    assert result.code == 2, result
    assert "Traceback" not in result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert message.format(w=world) in lines[0]
    assert tree_digest(world) == before


USAGE_CASES = [
    ("unknown verb", ["nosuchcmd"], "No such command 'nosuchcmd'"),
    ("unknown option", ["versions", "--bogus"], "No such option: --bogus"),
    ("export without --format", ["export", "ds", "--out", "x"], "Missing option '--format'"),
    ("missing argument", ["show"], "Missing argument 'target'"),
]


@pytest.mark.parametrize("args, message", [case[1:] for case in USAGE_CASES], ids=[case[0] for case in USAGE_CASES])
def test_usage_errors_print_the_usage_and_exit_2(world, capsys, args, message):
    before = tree_digest(world)
    result = synthrank_here(capsys, *args)
    assert result.code == 2 and "Traceback" not in result.out + result.err
    assert "Usage: synthrank" in result.err and message in result.err
    assert tree_digest(world) == before


def test_the_entry_point_as_a_process_version_help_and_usage():
    version = synthrank_process("--version")
    assert version.code == 0 and version.out.startswith("synthrank ") and not version.err
    bare = synthrank_process()
    assert "Usage: synthrank" in bare.out + bare.err and "Traceback" not in bare.out + bare.err
    assert bare.code in (0, 2)
    unknown = synthrank_process("nosuchcmd")
    assert unknown.code == 2 and "No such command" in unknown.err and "Traceback" not in unknown.err


def test_export_help_lists_every_format_per_kind(capsys):
    from warehouse.formats import formats_by_kind

    result = synthrank_here(capsys, "export", "--help")
    text = " ".join(result.out.replace("│", " ").split())
    assert result.code == 0
    for kind, formats in formats_by_kind().items():
        assert f"{kind}: {', '.join(formats)}" in text


def test_ingest_waits_then_names_the_process_holding_the_warehouse(world, tmp_path, capsys):
    held = tmp_path / "held.duckdb"
    release = tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-m", "tests.warehouse_support", "--warehouse", str(held),
                               "--hold-until", str(release)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().startswith("OPEN")
        result = synthrank_here(capsys, "ingest", str(world / "src" / "good"), "--name", "g", "--domain", "d",
                                "--wait", "0.5", "-w", str(held))
    finally:
        release.touch()
        holder.wait(timeout=60)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert f"PID {holder.pid}" in result.err and "Waited 0.5 s" in result.err


# ------------------------------------------------------------------ cases that need a build


@pytest.mark.slow
def test_builds_that_fail_print_one_line_and_leave_nothing(prefect_harness, tmp_path):
    """A bad source line and a teacher that never answers: one line each (the traceback only
    with --debug), no warehouse or output left by the first, no version published by either."""
    from prefect.settings import PREFECT_API_URL

    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}
    write_beir(tmp_path / "bad-source", GOOD_CORPUS + "{not json}\n", GOOD_QUERIES)
    bad = write_yaml(tmp_path / "bad.yaml", {"dataset": "bad", "output": "out",
                                            "sources": [{"name": "bad", "domain": "d", "path": "bad-source"}]})
    before = tree_digest(tmp_path)
    result = synthrank_process("build", str(bad), env=env, cwd=tmp_path)
    assert result.code == 2 and "Traceback" not in result.out + result.err, result.err
    assert result.err.strip().splitlines() == [f"error: {tmp_path}/bad-source/corpus.jsonl:3: malformed JSON "
                                               "(Expecting property name enclosed in double quotes at column 2); "
                                               f"{SKIP_HINT}"]
    assert tree_digest(tmp_path) == before  # no empty warehouse, no output folder

    debug = synthrank_process("--debug", "build", str(bad), env=env, cwd=tmp_path)
    assert debug.code != 0 and "Traceback" in debug.err

    source = write_scored_beir(tmp_path / "scored", queries=4)
    down = write_spec(tmp_path / "down", source, {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0,
                                                  "timeout_s": 2})
    result = synthrank_process("build", str(down), env=env, cwd=tmp_path)
    assert result.code == 2 and "Traceback" not in result.out + result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    line = lines[0]
    assert line.startswith("error: 4 of 4 teacher calls failed") and "nothing was published" in line
    with Warehouse.open(tmp_path / "down" / "out" / "synthrank.duckdb", read_only=True) as wh:
        assert [v["status"] for v in list_versions(wh, "teachers")] == ["failed"]
    assert not (tmp_path / "down" / "out" / "teachers").exists()


@pytest.mark.parametrize("error, message", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/v3.partial"),
     "/data/out/v3.partial: No space left on device (the disk is full)"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/wh.duckdb"), "/data/wh.duckdb: Permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/out"), "/data/out: Is a directory"),
    (duckdb.IOException('IO Error: Could not write file "wh.duckdb.wal": No space left on device\nmore'),
     'the warehouse: IO Error: Could not write file "wh.duckdb.wal": No space left on device'),
])
def test_os_and_duckdb_errors_become_one_line(error, message):
    """Conditions this machine cannot produce on demand (a full disk; permissions, as root)."""
    from flows.cli import _expected_error

    assert _expected_error(error) == message


def test_a_bug_keeps_its_traceback():
    from flows.cli import _expected_error

    assert _expected_error(KeyError("x")) is None
