-- Core tables: ingest, provenance, quarantine, signals, runs and selections.
--
-- The large tables (samples_base, sample_sources, labels, scores, selections) carry no PRIMARY KEY:
-- DuckDB's ART index halves ingest speed and grows the file by half. Their keys (in comments) are
-- kept by the writers instead: `curate.store.tables.insert_missing` inserts only rows whose key is
-- absent, and a store has one writing process at a time.

CREATE TABLE sources (
    source_id   VARCHAR PRIMARY KEY,      -- hash of (name, uri, sha256, dialect, mapping)
    name        VARCHAR NOT NULL,         -- the --source name (default: file or folder stem)
    uri         VARCHAR NOT NULL,         -- file path, or hf://owner/name:split
    dialect     VARCHAR NOT NULL,
    sha256      VARCHAR,                  -- of the file's bytes (NULL for hub datasets)
    mapping     JSON,                     -- field mapping applied, if any
    license     VARCHAR,
    status      VARCHAR NOT NULL,         -- 'partial' until the last batch committed, then 'complete'
    rows_read   BIGINT NOT NULL DEFAULT 0,
    rows_new    BIGINT NOT NULL DEFAULT 0,
    rows_duplicate BIGINT NOT NULL DEFAULT 0,
    rows_quarantined BIGINT NOT NULL DEFAULT 0,
    watermark   BIGINT NOT NULL DEFAULT 0,   -- last row number committed; a resumed ingest starts after it
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

-- The stored record. Read it through the `samples` view, which adds derived columns.
CREATE TABLE samples_base (
    sample_id   VARCHAR NOT NULL,         -- key; sha256 of the normalised messages (32 hex chars)
    kind        VARCHAR NOT NULL,         -- instruction | trajectory | synthetic
    messages    STRUCT(role VARCHAR, content VARCHAR)[] NOT NULL,
    gold_answer VARCHAR,                  -- final answer for problems with one (gsm8k, math, synthetic)
    meta        JSON,                     -- fields of the record that were not mapped
    created_at  TIMESTAMP NOT NULL
);

-- Derived columns are computed when read (storing copies of the longest strings halves ingest speed).
CREATE VIEW samples AS
SELECT sample_id, kind, messages,
       list_filter(messages, lambda m: m.role = 'user')[1].content AS prompt,        -- first user turn
       list_filter(messages, lambda m: m.role = 'assistant')[-1].content AS response, -- last assistant turn
       len(list_filter(messages, lambda m: m.role = 'user')) AS turns,              -- user turns
       coalesce(list_sum(list_transform(messages, lambda m: length(m.content))), 0) AS chars,
       gold_answer, meta, created_at
FROM samples_base;

CREATE TABLE sample_sources (
    sample_id   VARCHAR NOT NULL,
    source_id   VARCHAR NOT NULL,
    row_number  BIGINT NOT NULL           -- line number for jsonl, 1-based record index otherwise
    -- key: (source_id, row_number)
);

CREATE TABLE quarantine (
    source_id   VARCHAR NOT NULL,
    row_number  BIGINT NOT NULL,
    field       VARCHAR,                  -- the field at fault, when one is
    reason      VARCHAR NOT NULL,
    raw         VARCHAR,                  -- the raw row, truncated
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (source_id, row_number)
);

CREATE TABLE labels (
    sample_id   VARCHAR NOT NULL,
    label       VARCHAR NOT NULL,
    origin      VARCHAR NOT NULL          -- instag | field | embedding | llm | ...
    -- key: (sample_id, label, origin)
);

CREATE TABLE scores (
    sample_id   VARCHAR NOT NULL,
    scorer      VARCHAR NOT NULL,         -- names what produced it: method, model, criterion
    value       DOUBLE,                   -- NULL when status = 'failed'
    status      VARCHAR NOT NULL DEFAULT 'ok',   -- ok | failed
    error       VARCHAR,
    details     JSON,
    run_id      VARCHAR,
    created_at  TIMESTAMP NOT NULL
    -- key: (sample_id, scorer)
);

CREATE TABLE runs (
    run_id      VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,         -- e.g. select:random, score:difficulty
    recipe      VARCHAR,
    params      JSON NOT NULL,
    params_hash VARCHAR NOT NULL,
    code_version VARCHAR NOT NULL,
    flow_run_id VARCHAR,                  -- Prefect flow-run id when run from a flow
    status      VARCHAR NOT NULL,         -- running | completed | failed
    error       VARCHAR,
    counts      JSON,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

CREATE TABLE selections (
    run_id      VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    selected    BOOLEAN NOT NULL,         -- false rows record why a candidate was dropped
    rank        INTEGER,                  -- 1-based order of selection; NULL when dropped
    score       DOUBLE,                   -- the gain or score that ranked it
    reason      VARCHAR,
    details     JSON
    -- key: (run_id, sample_id)
);
