-- Virtual keys. The secret is never stored: only its SHA-256 (hex) and a display prefix.
-- Nested structures are JSON documents until later migrations give budgets and limits their
-- own tables (they will carry usage counters).
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
