-- Model layer: cached sample embeddings and the LLM response cache.

CREATE TABLE embeddings (
    sample_id   VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,         -- the name the model was asked for (the default: all-MiniLM-L6-v2)
    view        VARCHAR NOT NULL,         -- prompt | conversation | response: what text was embedded
    vector      FLOAT[] NOT NULL,         -- L2-normalised
    truncated   BOOLEAN NOT NULL,         -- the text was longer than the model's limit
    created_at  TIMESTAMP NOT NULL
    -- key: (sample_id, model, view)
);

-- Every LLM call a stage made, keyed by backend, model and the full request, so a stage that
-- crashes resumes without repeating finished calls. A failed call is kept with its error (and
-- retried on the next run); a success replaces it.
CREATE TABLE llm_cache (
    key         VARCHAR PRIMARY KEY,      -- sha256 of (backend, model, request)
    backend     VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    request     JSON NOT NULL,
    response    JSON,                     -- NULL when the call failed
    error       VARCHAR,
    created_at  TIMESTAMP NOT NULL
);
