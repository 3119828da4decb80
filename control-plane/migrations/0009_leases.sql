-- Budget leases: per budget window, the budget and every Envoy's share of it. A lease call
-- locks its window's row (an UPDATE) before it reads the shares, so two control planes on one
-- database never grant the same dollar twice.
CREATE TABLE lease_windows (
    counter         TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_end_ms   BIGINT NOT NULL,
    max_micros      BIGINT NOT NULL,
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
