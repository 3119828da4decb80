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
    calendar_aligned BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

ALTER TABLE virtual_keys ADD COLUMN max_concurrent_requests INTEGER;
