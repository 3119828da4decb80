-- Warden's schema, run as is on SQLite and on PostgreSQL: TEXT, BIGINT and BOOLEAN only, no
-- AUTOINCREMENT or SERIAL, and the same constraint names. (It squashes the pre-release migrations
-- 0001-0009; a database made by those is refused with a message, see store/sql.rs.)
--
-- Nested structures (provider configs, budgets, limits, prices) are JSON documents in TEXT
-- columns. Times are RFC 3339 TEXT, except the ledger's Unix milliseconds.

-- Virtual keys. The secret is never stored: only its SHA-256 (hex) and a display prefix.
CREATE TABLE virtual_keys (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    description      TEXT NOT NULL DEFAULT '',
    value_hash       TEXT NOT NULL UNIQUE,
    value_prefix     TEXT NOT NULL,
    is_active        BOOLEAN NOT NULL,
    team_id          TEXT,
    customer_id      TEXT,
    provider_configs TEXT NOT NULL DEFAULT '[]',
    mcp_configs      TEXT NOT NULL DEFAULT '[]',
    budgets          TEXT NOT NULL DEFAULT '[]',
    rate_limit       TEXT,
    calendar_aligned BOOLEAN NOT NULL DEFAULT FALSE,
    allow_all_providers BOOLEAN NOT NULL DEFAULT FALSE,
    max_concurrent_requests BIGINT,
    -- Prices that apply to this key only, by model name (JSON object).
    prices           TEXT NOT NULL DEFAULT '{}',
    expires_at       TEXT,
    delete_after_expire BOOLEAN,
    disable_content_logging BOOLEAN,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CHECK (team_id IS NULL OR customer_id IS NULL)
);

-- Small named values that must survive restarts: the admin token's hash, the filter settings.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Upstream providers and their API keys. A provider key is the one secret the control plane
-- must keep in clear: it serves it to Envoy over SDS. It is never returned by the admin API.
CREATE TABLE providers (
    name        TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    models      TEXT NOT NULL DEFAULT '[]',
    keys        TEXT NOT NULL DEFAULT '[]',
    timeouts    TEXT NOT NULL DEFAULT '{}',
    rate_limit  TEXT,
    -- Provider-wide dollar budgets, shared by every key.
    budgets     TEXT NOT NULL DEFAULT '[]',
    calendar_aligned BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Customers, teams and model configs. Budgets and rate limits are JSON documents, as on
-- virtual keys.
CREATE TABLE customers (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    budgets          TEXT NOT NULL DEFAULT '[]',
    rate_limit       TEXT,
    calendar_aligned BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

-- The foreign key backs the admin API's check: a customer cannot be deleted under its teams.
CREATE TABLE teams (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    customer_id      TEXT REFERENCES customers (id),
    budgets          TEXT NOT NULL DEFAULT '[]',
    rate_limit       TEXT,
    calendar_aligned BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX teams_customer_id ON teams (customer_id);

CREATE TABLE model_configs (
    id               TEXT PRIMARY KEY NOT NULL,
    model_name       TEXT NOT NULL,
    provider         TEXT,
    budgets          TEXT NOT NULL DEFAULT '[]',
    rate_limit       TEXT,
    calendar_aligned BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
-- UNIQUE (model_name, provider) would let any number of NULL providers through: both databases
-- treat NULLs as distinct. The admin API refuses an empty provider, so '' cannot collide.
CREATE UNIQUE INDEX model_configs_model_provider ON model_configs (model_name, (COALESCE(provider, '')));

-- Virtual keys have no foreign keys: the admin API checks a key's team and customer, and
-- deleting those detaches or refuses explicitly (store/sql/governance.rs). These indexes serve
-- the reference checks and detaching on delete.
CREATE INDEX virtual_keys_team_id ON virtual_keys (team_id);
CREATE INDEX virtual_keys_customer_id ON virtual_keys (customer_id);

-- The usage ledger: one row per request a filter reported, keyed by its idempotency id, so a
-- record resent after a lost acknowledgement, or delivered to two control planes, is stored once.
CREATE TABLE usage_records (
    id                  TEXT PRIMARY KEY NOT NULL,
    at_ms               BIGINT NOT NULL,
    key_id              TEXT NOT NULL,
    team_id             TEXT,
    customer_id         TEXT,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cost_micros         BIGINT NOT NULL,
    status              BIGINT NOT NULL,
    -- Refusals reported by the filters travel with the usage records (same idempotency ids) and
    -- are kept here once each; every new one is also appended to the audit log. '' for a
    -- request that was served.
    denial              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX usage_records_at ON usage_records (at_ms);
CREATE INDEX usage_records_key ON usage_records (key_id, at_ms);

-- The audit log: append-only, each row chained to the one before by a SHA-256 over both, so a
-- changed, removed or inserted row breaks the chain (`warden audit-verify`). `seq` is assigned
-- by the appender (last + 1) inside the transaction that holds the append lock, not by the
-- database: the chain needs it before the row is written, and gaps would read as removals.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY NOT NULL,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    status    BIGINT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- Budget leases: per budget window, the budget and every Envoy's share of it. A lease call
-- locks its window's row (an UPDATE) before it reads the shares, so two control planes on one
-- database never grant the same dollar twice.
CREATE TABLE lease_windows (
    counter         TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_end_ms   BIGINT NOT NULL,
    max_micros      BIGINT NOT NULL,
    -- When an Envoy last asked for more than was free (Unix ms): the others give back.
    wanted_ms       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (counter, window_start_ms)
);
CREATE INDEX lease_windows_end ON lease_windows (window_end_ms);

CREATE TABLE leases (
    counter         TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    node            TEXT NOT NULL,
    granted         BIGINT NOT NULL,
    used            BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    PRIMARY KEY (counter, window_start_ms, node)
);

-- The Envoys that asked lately: budgets are shared among them.
CREATE TABLE lease_nodes (
    node    TEXT PRIMARY KEY NOT NULL,
    seen_ms BIGINT NOT NULL
);
