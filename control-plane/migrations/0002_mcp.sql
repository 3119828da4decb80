-- MCP clients: the servers the hub connects to. The whole client is one JSON document; the
-- name is a column of its own so that the database keeps it unique.
CREATE TABLE mcp_clients (
    client_id  TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL
);
