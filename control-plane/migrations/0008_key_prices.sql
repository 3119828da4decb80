-- Prices that apply to one virtual key only, by model name (JSON object).
ALTER TABLE virtual_keys ADD COLUMN prices TEXT NOT NULL DEFAULT '{}';
