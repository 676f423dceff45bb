-- Labelling (`curate label ...`): what produced each label, and the samples a labeller failed on.

-- Labels written at ingest (e.g. the mig-pool dialect's InsTag tags) leave these NULL.
ALTER TABLE labels ADD COLUMN score DOUBLE;      -- the labeller's confidence, when it has one (embedding: cosine)
ALTER TABLE labels ADD COLUMN details JSON;      -- e.g. the raw LLM tag a label was normalised or mapped from
ALTER TABLE labels ADD COLUMN run_id VARCHAR;    -- the `curate label` run that wrote it

-- A sample a labeller could not label (an LLM error, an unparseable answer, a field of the wrong
-- type): recorded with its reason, never replaced by a default label. A later run that labels the
-- sample deletes its failure.
CREATE TABLE label_failures (
    sample_id   VARCHAR NOT NULL,
    origin      VARCHAR NOT NULL,
    error       VARCHAR NOT NULL,
    raw         VARCHAR,                  -- what the labeller got (LLM answer, field value), truncated
    run_id      VARCHAR,
    created_at  TIMESTAMP NOT NULL
    -- key: (sample_id, origin)
);

-- Embeddings of label strings (the label graph's nodes), so a selection re-run with other
-- parameters does not embed the vocabulary again.
CREATE TABLE label_embeddings (
    label       VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    vector      FLOAT[] NOT NULL,         -- L2-normalised
    created_at  TIMESTAMP NOT NULL
    -- key: (label, model)
);
