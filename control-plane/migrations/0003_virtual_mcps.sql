-- Virtual MCPs: named bundles of tools served at /mcp/<endpoint_slug> to the keys attached to
-- them. The whole bundle (with its attached keys) is one JSON document; the slug is a column of
-- its own so that the database keeps it unique.
CREATE TABLE virtual_mcps (
    id             TEXT PRIMARY KEY,
    endpoint_slug  TEXT NOT NULL UNIQUE,
    config         TEXT NOT NULL
);
