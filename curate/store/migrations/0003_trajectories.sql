-- Search-agent trajectories: the parsed structure of each trajectory sample, its measures and its
-- scores (one row per sample of kind 'trajectory'), its steps, and the views audits start from.
-- Written at ingest by the trajectory dialects (curate/formats/{search_r1,r1_searcher,
-- simple_deep_searcher,zerosearch}.py, through curate/trajectories/record.py).

CREATE TABLE trajectories (
    sample_id           VARCHAR NOT NULL,   -- key
    dialect             VARCHAR NOT NULL,   -- search-r1 | zerosearch | r1-searcher | simple-deep-searcher
    question            VARCHAR NOT NULL,
    gold_answers        VARCHAR[],          -- NULL when the data has none (then em/f1/cover_em are NULL)
    final_answer        VARCHAR,            -- extracted from the response only; NULL: none found
    answer_source       VARCHAR,            -- answer_tag (<answer>...</answer>) | boxed (\boxed{})
    recorded_answer     VARCHAR,            -- an answer the data came with (R1-Searcher's pred_ans)
    stop_reason         VARCHAR,            -- as the data recorded it (R1-Searcher's stop_reason_final)
    policy_model        VARCHAR,            -- when the record names it (policy_model, model, model_name)
    simulated_search    BOOLEAN NOT NULL,   -- documents written by a simulated search engine (ZeroSearch)
    judge               VARCHAR,            -- the judge of a verdict that came with the data (gpt-4o-mini)
    judge_output        VARCHAR,            -- its raw output
    judge_verdict       BOOLEAN,            -- True/False when the output says so, else NULL
    -- counts
    turns               INTEGER NOT NULL,   -- assistant turns (stretches of policy text between observations)
    steps               INTEGER NOT NULL,
    searches            INTEGER NOT NULL,
    unique_queries      INTEGER NOT NULL,   -- distinct queries (whitespace collapsed)
    repeated_queries    INTEGER NOT NULL,   -- searches - unique_queries
    documents           INTEGER NOT NULL,   -- documents retrieved, over all searches
    unique_documents    INTEGER NOT NULL,
    repeated_documents  INTEGER NOT NULL,   -- documents - unique_documents
    top_k               INTEGER NOT NULL,   -- the most documents one search returned
    reasoning_words     INTEGER NOT NULL,   -- words of think steps and of reasoning outside them
    first_segment_words INTEGER NOT NULL,   -- words of the first assistant turn (a "reasoning segment")
    longest_segment_words INTEGER NOT NULL, -- words of the longest assistant turn
    answer_words        INTEGER,            -- words of the final answer
    response_words      INTEGER NOT NULL,   -- words of the whole response, observations included
    max_alternatively   INTEGER NOT NULL,   -- most "Alternatively" in one assistant turn
    max_hmm             INTEGER NOT NULL,   -- most "hmm" in one assistant turn
    max_wait            INTEGER NOT NULL,   -- most "wait" in one assistant turn
    max_trigram_share   DOUBLE NOT NULL,    -- share of the most frequent word trigram of the response
    extra_think_closes  INTEGER NOT NULL,   -- </think> beyond the think blocks opened (the prompt's included)
    boxed_before_think_end INTEGER NOT NULL,-- \boxed{ before the first </think>
    cjk_outside_documents INTEGER NOT NULL, -- CJK characters in the policy's own text
    -- scores (SQuAD normalisation; max over gold answers; NULL without gold answers)
    em                  DOUBLE,
    f1                  DOUBLE,
    cover_em            DOUBLE,             -- some gold answer is a substring of the final answer
    retrieval_hit       BOOLEAN,            -- some gold answer appears in some observation
    answer_in_documents BOOLEAN,            -- the final answer appears in some observation
    answer_in_reasoning BOOLEAN,            -- the final answer appears in the policy's reasoning
    unsupported_answer  BOOLEAN,            -- an answer no observation contains (possible memorisation)
    -- validity
    strict_ok           BOOLEAN NOT NULL,   -- the dialect's reference format check passes
    lenient_ok          BOOLEAN NOT NULL,   -- answer found, blocks closed, results follow searches, markers well-formed
    format_errors       VARCHAR[] NOT NULL, -- codes of every failed check, strict and lenient
    strict_message      VARCHAR             -- the reference check's own words
);

CREATE TABLE trajectory_steps (
    sample_id     VARCHAR NOT NULL,
    step          INTEGER NOT NULL,         -- 1-based, in order; key (sample_id, step)
    role          VARCHAR NOT NULL,         -- think | search | observation | answer | invalid | system
    message_index INTEGER NOT NULL,         -- 1-based index of the sample's message holding the step
    text          VARCHAR NOT NULL,         -- the verbatim span: a response is its steps' texts joined
    query         VARCHAR,                  -- search steps
    documents     STRUCT(id VARCHAR, title VARCHAR, url VARCHAR, text VARCHAR)[],   -- observation steps
    simulated     BOOLEAN,                  -- observation steps: written by a simulated search engine
    loss_mask     BOOLEAN NOT NULL,         -- true: the policy wrote it (train on it); false: mask it out
    issue         VARCHAR                   -- unclosed (block without its end marker) | fabricated (results the policy wrote)
);

-- The first source a sample came from: its name (--source, default the argument's stem) and the
-- name of the file it was read from.
CREATE VIEW trajectory_sources AS
SELECT sample_id, first.name AS source, first.file AS file
FROM (SELECT ss.sample_id,
             arg_min(struct_pack(name := src.name, file := regexp_extract(src.uri, '[^/]+$')),
                     (src.started_at, ss.source_id, ss.row_number)) AS first
      FROM sample_sources ss JOIN sources src USING (source_id)
      GROUP BY ss.sample_id);

CREATE VIEW trajectory_quality AS
SELECT t.sample_id, t.dialect, s.source, s.file, t.question, t.gold_answers, t.final_answer, t.recorded_answer,
       t.em, t.f1, t.cover_em, t.judge, t.judge_verdict,
       CASE WHEN t.judge_verdict IS NULL OR t.em IS NULL THEN NULL
            ELSE (t.em = 1) <> t.judge_verdict END AS em_judge_disagree,
       t.strict_ok, t.lenient_ok, t.format_errors, t.strict_message,
       t.retrieval_hit, t.answer_in_documents, t.answer_in_reasoning, t.unsupported_answer,
       t.searches, t.stop_reason, t.policy_model
FROM trajectories t LEFT JOIN trajectory_sources s USING (sample_id);

CREATE VIEW search_behaviour AS
SELECT t.sample_id, t.dialect, s.source, s.file, t.searches, t.unique_queries, t.repeated_queries,
       t.repeated_queries / nullif(t.searches, 0) AS repeated_query_rate,
       t.documents, t.unique_documents, t.repeated_documents, t.top_k,
       t.unique_documents / nullif(t.searches, 0) AS unique_documents_per_search,
       t.simulated_search, t.retrieval_hit, t.turns, t.reasoning_words
FROM trajectories t LEFT JOIN trajectory_sources s USING (sample_id);

-- One row per (trajectory, format error code).
CREATE VIEW trajectory_format_errors AS
SELECT t.sample_id, t.dialect, s.source, s.file, unnest(t.format_errors) AS error, t.strict_message
FROM trajectories t LEFT JOIN trajectory_sources s USING (sample_id);
