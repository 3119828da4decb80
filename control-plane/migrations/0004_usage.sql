-- The usage ledger: one row per request a filter reported, keyed by its idempotency id, so a
-- record resent after a lost acknowledgement is stored once.
CREATE TABLE usage_records (
    id                  TEXT PRIMARY KEY NOT NULL,
    at_ms               INTEGER NOT NULL,
    key_id              TEXT NOT NULL,
    team_id             TEXT,
    customer_id         TEXT,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cost_micros         INTEGER NOT NULL,
    status              INTEGER NOT NULL
);
CREATE INDEX usage_records_at ON usage_records (at_ms);
CREATE INDEX usage_records_key ON usage_records (key_id, at_ms);
