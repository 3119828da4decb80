-- Anonymous refusals (no key, an unknown key) arrive aggregated: one record per minute, reason
-- and Envoy worker, standing for `repeats` refusals.
ALTER TABLE usage_records ADD COLUMN repeats BIGINT NOT NULL DEFAULT 1;
