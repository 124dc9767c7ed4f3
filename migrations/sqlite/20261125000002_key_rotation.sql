-- Rotation: a key signs from `activates_at` on and leaves the JWKS at `retires_at`.
ALTER TABLE signing_keys ADD COLUMN activates_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN retires_at INTEGER;
UPDATE signing_keys SET activates_at = created_at;
