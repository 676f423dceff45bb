-- Quality scoring: QuRating pairwise judgments, kept so the Bradley–Terry fit can be redone
-- (`curate score fit-pairwise`) with another confidence margin or regularisation.

CREATE TABLE pairwise_judgments (
    scorer      VARCHAR NOT NULL,         -- qurating:<criterion>:<model>, the scorer its ratings go to
    sample_a    VARCHAR NOT NULL,         -- sample_a < sample_b
    sample_b    VARCHAR NOT NULL,
    p_forward   DOUBLE,                   -- P(b preferred) asked with a shown first
    p_backward  DOUBLE,                   -- P(b preferred) asked with b shown first (1 - P(second preferred))
    p           DOUBLE,                   -- calibrated P(b ≻ a) = (p_forward + p_backward) / 2; NULL if failed
    status      VARCHAR NOT NULL,         -- ok | failed
    error       VARCHAR,
    details     JSON,                     -- the raw readings: label probabilities or vote counts per order
    run_id      VARCHAR,
    created_at  TIMESTAMP NOT NULL
    -- key: (scorer, sample_a, sample_b)
);
