-- Private signing keys (PKCS#8 DER). `slot` makes the first key of an algorithm unique across
-- replicas that start at the same moment.
CREATE TABLE IF NOT EXISTS signing_keys (
    kid                TEXT PRIMARY KEY NOT NULL,
    algorithm          TEXT NOT NULL,
    private_key_pkcs8  BLOB NOT NULL,
    slot               TEXT UNIQUE,
    created_at         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS signing_keys_created_at ON signing_keys (created_at DESC);
