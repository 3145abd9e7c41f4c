-- synthrank warehouse schema. Every statement is idempotent; `Warehouse.open` runs them all.

-- Source snapshots: immutable, named by a fingerprint of their name, domain and content.
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id  VARCHAR PRIMARY KEY,
    name         VARCHAR NOT NULL,
    domain       VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,      -- path or hub id it was read from
    source_kind  VARCHAR NOT NULL,      -- beir | table | hf
    n_passages   INTEGER NOT NULL,
    n_queries    INTEGER NOT NULL,
    n_qrels      INTEGER NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS passages (
    snapshot_id VARCHAR NOT NULL,
    docid       VARCHAR NOT NULL,
    title       VARCHAR NOT NULL,
    text        VARCHAR NOT NULL,
    PRIMARY KEY (snapshot_id, docid)
);

CREATE TABLE IF NOT EXISTS queries (
    snapshot_id VARCHAR NOT NULL,
    qid         VARCHAR NOT NULL,
    text        VARCHAR NOT NULL,
    answers     VARCHAR[],              -- reference answers where the source has them
    PRIMARY KEY (snapshot_id, qid)
);

CREATE TABLE IF NOT EXISTS qrels (
    snapshot_id VARCHAR NOT NULL,
    split       VARCHAR NOT NULL,
    qid         VARCHAR NOT NULL,
    docid       VARCHAR NOT NULL,
    grade       INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, split, qid, docid)
);

-- Candidate lists, computed once per (snapshot, retriever settings).
CREATE TABLE IF NOT EXISTS candidates (
    snapshot_id VARCHAR NOT NULL,
    retriever   VARCHAR NOT NULL,       -- e.g. bm25:k=20
    qid         VARCHAR NOT NULL,
    rank        INTEGER NOT NULL,       -- 1-based
    docid       VARCHAR NOT NULL,
    score       DOUBLE NOT NULL,
    PRIMARY KEY (snapshot_id, retriever, qid, rank)
);

-- Every teacher call: the cache, the resume point and the lineage at once.
CREATE TABLE IF NOT EXISTS teacher_calls (
    call_key          VARCHAR PRIMARY KEY,  -- sha256(model, sampling, messages, sample_index)
    model             VARCHAR NOT NULL,
    backend           VARCHAR NOT NULL,
    sample_index      INTEGER NOT NULL,
    request           JSON NOT NULL,        -- messages and sampling; never headers or keys
    status            VARCHAR NOT NULL,     -- ok | failed
    content           VARCHAR,
    reasoning         VARCHAR,
    finish_reason     VARCHAR,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    error             VARCHAR,
    attempts          INTEGER NOT NULL DEFAULT 1,
    latency_ms        DOUBLE,
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Dataset versions: a staging version becomes published in one transaction, then never changes
-- (warehouse/versions.py refuses; the manifest's per-kind row fingerprints catch edits made behind it).
CREATE TABLE IF NOT EXISTS dataset_versions (
    dataset        VARCHAR NOT NULL,
    version        INTEGER NOT NULL,
    parent_version INTEGER,
    status         VARCHAR NOT NULL,        -- building | published | failed
    spec           JSON NOT NULL,
    spec_hash      VARCHAR NOT NULL,
    code_version   VARCHAR NOT NULL,
    snapshot_ids   VARCHAR[] NOT NULL,
    manifest       JSON NOT NULL,           -- teachers, prompts, counts, rejections, content
                                            -- (row fingerprints), tokens, cost, timings
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    published_at   TIMESTAMP,
    PRIMARY KEY (dataset, version)
);

-- Accepted rows of every kind; `data` holds the kind's fields, `lineage` how the row was made.
CREATE TABLE IF NOT EXISTS dataset_rows (
    dataset   VARCHAR NOT NULL,
    version   INTEGER NOT NULL,
    kind      VARCHAR NOT NULL,             -- listwise | pointwise | negatives | mixed_cot
    row_id    VARCHAR NOT NULL,
    qid       VARCHAR NOT NULL,
    domain    VARCHAR NOT NULL,
    data      JSON NOT NULL,
    lineage   JSON NOT NULL,
    PRIMARY KEY (dataset, version, kind, row_id)
);

-- Rows that were not accepted, with the stage or filter that rejected them and why.
CREATE TABLE IF NOT EXISTS rejections (
    dataset   VARCHAR NOT NULL,
    version   INTEGER NOT NULL,
    kind      VARCHAR NOT NULL,
    row_id    VARCHAR NOT NULL,
    stage     VARCHAR NOT NULL,             -- validate | <filter name>
    reason    VARCHAR NOT NULL,
    score     DOUBLE,
    data      JSON NOT NULL,
    lineage   JSON NOT NULL,
    PRIMARY KEY (dataset, version, kind, row_id, stage)
);

-- Dense embeddings of a snapshot's passages, computed once per (snapshot, model).
CREATE TABLE IF NOT EXISTS embeddings (
    snapshot_id VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    docid       VARCHAR NOT NULL,
    vector      FLOAT[] NOT NULL,           -- L2-normalised
    PRIMARY KEY (snapshot_id, model, docid)
);

-- Every build run and what came of it: a scheduled run whose inputs did not change records
-- 'unchanged' and publishes nothing.
CREATE TABLE IF NOT EXISTS build_runs (
    dataset      VARCHAR NOT NULL,
    started_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    outcome      VARCHAR NOT NULL,          -- published | unchanged | failed
    version      INTEGER,
    inputs       VARCHAR NOT NULL,          -- fingerprint of snapshots, spec and prompt versions
    detail       VARCHAR,
    code         VARCHAR                    -- fingerprint of the synthrank code that ran the build
);
ALTER TABLE build_runs ADD COLUMN IF NOT EXISTS code VARCHAR;  -- warehouses made before it

-- Records ingest left out of a snapshot (`on_bad_record: skip`): why, and where they were.
CREATE TABLE IF NOT EXISTS snapshot_skips (
    snapshot_id VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,           -- empty_text | missing_id | duplicate_id | unknown_query | ...
    location    VARCHAR NOT NULL,           -- file:line or dataset row
    detail      VARCHAR NOT NULL
);

-- Human review (synthrank review push / pull): the Label Studio tasks a selection became, and
-- the annotations read back. A task or judgment names the version, kind, row and item (a
-- negative's docid, '' for a whole row) it is about; the server's token is never stored.
CREATE TABLE IF NOT EXISTS review_tasks (
    server      VARCHAR NOT NULL,           -- base URL, without credentials
    project_id  INTEGER NOT NULL,
    task_id     INTEGER NOT NULL,
    dataset     VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    kind        VARCHAR NOT NULL,
    row_id      VARCHAR NOT NULL,
    item        VARCHAR NOT NULL,
    selection   VARCHAR NOT NULL,           -- disputed | rejected | ... | sample:N | sql:<predicate>
    content     VARCHAR NOT NULL,           -- fingerprint of what the annotator was shown
    pushed_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (server, project_id, task_id)
);

CREATE TABLE IF NOT EXISTS human_judgments (
    server        VARCHAR NOT NULL,
    project_id    INTEGER NOT NULL,
    task_id       INTEGER NOT NULL,
    annotation_id INTEGER NOT NULL,
    dataset       VARCHAR NOT NULL,
    version       INTEGER NOT NULL,         -- the version the annotator judged
    kind          VARCHAR NOT NULL,
    row_id        VARCHAR NOT NULL,
    item          VARCHAR NOT NULL,
    selection     VARCHAR NOT NULL,
    content       VARCHAR NOT NULL,
    judgment      JSON NOT NULL,            -- per kind: relevant + ranking | verdict | answer + reasoning
    annotator     VARCHAR NOT NULL,         -- Label Studio user id and email
    annotated_at  TIMESTAMP NOT NULL,       -- the annotation's last update on the server
    pulled_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (server, project_id, annotation_id)
);
