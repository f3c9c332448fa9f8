-- OAuth 2.0: the tokens of each connection, and the authorizations waiting for a user's
-- consent.

-- One row per connection that holds tokens. Both tokens are sealed together (AES-256-GCM)
-- with the connection id as associated data. `version` grows with every write, so a
-- refresh can tell whether another one already replaced the tokens it read.
CREATE TABLE oauth_tokens (
    connection_id TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    -- The scopes granted, space-separated.
    scopes        TEXT NOT NULL,
    issued_at     INTEGER NOT NULL,
    -- NULL when the provider did not say.
    expires_at    INTEGER,
    updated_at    INTEGER NOT NULL
);

-- An authorization started and not yet finished: the `state` sent to the provider (only
-- its SHA-256 is kept), who started it for which connection, and the PKCE verifier, sealed.
-- A row is used once: `used_at` is set by the callback that consumes it.
CREATE TABLE oauth_states (
    state_hash    BLOB PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    principal_id  TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX oauth_states_connection ON oauth_states (connection_id);
