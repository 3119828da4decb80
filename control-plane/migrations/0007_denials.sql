-- Refusals reported by the filters travel with the usage records (same idempotency ids) and
-- are kept here once each; every new one is also appended to the audit log.
ALTER TABLE usage_records ADD COLUMN denial TEXT NOT NULL DEFAULT '';
