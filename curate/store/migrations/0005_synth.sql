-- RV-Syn: the function library, the seeds it was built from, the merges, and every synthesis attempt.

-- One row per function ever added (merged ones stay, pointing at the one they were merged into).
CREATE TABLE synth_functions (
    function_id    VARCHAR PRIMARY KEY,   -- 'fn-' + sha256 of `code`
    name           VARCHAR NOT NULL,
    code           VARCHAR NOT NULL,      -- the function's source, as executed in the sandbox
    doc            VARCHAR,               -- its one-line docstring
    params         JSON NOT NULL,         -- [{name, kind: int|num|any, lo, hi, step}]: kinds and ranges of realistic inputs
    returns        VARCHAR NOT NULL,      -- int | num | any
    template       VARCHAR,               -- noun phrase with one {param} per parameter (problem text without an LLM)
    topic          VARCHAR,               -- from curate.synth.starter.TOPICS; NULL when tagging failed
    topic_origin   VARCHAR,               -- starter | keywords | llm:<backend>:<model>; 'failed: ...' when it failed
    origin         VARCHAR NOT NULL,      -- starter | llm
    model          VARCHAR,               -- backend:model that wrote it (origin llm)
    canonical_hash VARCHAR NOT NULL,      -- sha256 of the canonical AST (curate/synth/canonical.py)
    merged_into    VARCHAR,               -- the function it was merged into; NULL for a library member
    run_id         VARCHAR,               -- the run that added it
    created_at     TIMESTAMP NOT NULL
);

-- Which functions one seed solution (or starter example) used: the co-occurrence edges.
CREATE TABLE synth_function_uses (
    function_id VARCHAR NOT NULL,
    seed        VARCHAR NOT NULL,         -- seed sample_id, or 'starter:<example>'
    run_id      VARCHAR
    -- key: (function_id, seed)
);

-- Every seed a library run tried: kept or dropped, and why.
CREATE TABLE synth_seeds (
    run_id          VARCHAR NOT NULL,
    sample_id       VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,     -- kept | dropped
    reason          VARCHAR,              -- why dropped (llm_error, no_code, forbidden, exception, timeout, answer_mismatch, ...)
    error           VARCHAR,              -- the error or mismatch, in words
    gold_answer     VARCHAR,
    executed_answer VARCHAR,
    response        VARCHAR,              -- the LLM's raw text
    code            VARCHAR,              -- the program extracted from it
    functions       JSON,                 -- function_ids added from this seed
    details         JSON,                 -- per-function notes (kept, or why not), trace
    created_at      TIMESTAMP NOT NULL
    -- key: (run_id, sample_id)
);

-- What was merged into what, by which check.
CREATE TABLE synth_merges (
    run_id         VARCHAR,
    kept_id        VARCHAR NOT NULL,
    merged_id      VARCHAR NOT NULL,
    method         VARCHAR NOT NULL,      -- ast | behaviour
    canonical_hash VARCHAR,
    details        JSON,                  -- behaviour: the inputs and the shared outputs
    created_at     TIMESTAMP NOT NULL
);

-- Every synthesis attempt, kept or rejected, with each step's output.
CREATE TABLE synth_problems (
    problem_id   VARCHAR NOT NULL,        -- run_id + ':' + attempt
    run_id       VARCHAR NOT NULL,
    attempt      INTEGER NOT NULL,        -- 1-based; also the row_number of the sample's provenance
    status       VARCHAR NOT NULL,        -- kept | rejected
    stage        VARCHAR NOT NULL,        -- where it ended: sample | compose | execute | backtranslate | verify | store
    reason       VARCHAR,                 -- rejection reason (see `curate synth generate --help`)
    error        VARCHAR,                 -- the error in words
    strategy     VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    functions    JSON,                    -- function_ids sampled
    sampling     JSON,                    -- how they were sampled (walk, topic, padding)
    code         VARCHAR,                 -- the executed program
    trace        JSON,                    -- [{function, args, result, raised, depth}]
    answer       VARCHAR,                 -- the executed final answer (gold)
    problem      VARCHAR,
    solution     VARCHAR,
    verification JSON,                    -- method, samples, answers, matches
    responses    JSON,                    -- the LLM's raw replies per stage (compose, backtranslate)
    solve_rate   DOUBLE,                  -- share of verifier samples that reached the answer (LLM verification)
    sample_id    VARCHAR,                 -- the synthetic sample (kept ones)
    created_at   TIMESTAMP NOT NULL
    -- key: problem_id
);

CREATE VIEW synth_rejections AS
SELECT run_id, stage, reason, count(*) AS attempts
FROM synth_problems WHERE status = 'rejected' GROUP BY ALL;
