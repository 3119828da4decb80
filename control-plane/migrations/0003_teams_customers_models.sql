-- Customers, teams and model configs. Budgets and rate limits are JSON documents, as on
-- virtual keys, until budgets get their own tables (they will carry usage counters).
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
-- UNIQUE (model_name, provider) would let any number of NULL providers through: SQLite treats
-- NULLs as distinct. The admin API refuses an empty provider, so '' cannot collide.
CREATE UNIQUE INDEX model_configs_model_provider ON model_configs (model_name, COALESCE(provider, ''));

-- Virtual keys have no foreign keys (SQLite cannot add them to an existing table); these
-- indexes serve the reference checks and detaching on delete.
CREATE INDEX virtual_keys_team_id ON virtual_keys (team_id);
CREATE INDEX virtual_keys_customer_id ON virtual_keys (customer_id);
