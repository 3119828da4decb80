-- Provider-wide dollar budgets, shared by every key.
ALTER TABLE providers ADD COLUMN budgets TEXT NOT NULL DEFAULT '[]';
