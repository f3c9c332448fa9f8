-- Junction's store. Times are milliseconds since the Unix epoch (UTC). Ids are prefixed
-- and sort by creation time.

-- The key check: a known value sealed with the master key, to tell a wrong key from a
-- right one before anything else is read.
CREATE TABLE store_key (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    key_id      TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL
);

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    members_can_create_shared_connections INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL
);

CREATE TABLE principals (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);

-- API tokens are stored as the SHA-256 of the token: they are 256-bit random values, so a
-- fast hash is enough and a lookup by hash is exact.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    token_hash   BLOB NOT NULL UNIQUE,
    name         TEXT,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE folders (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('shared', 'personal')),
    owner_id    TEXT REFERENCES principals(id),
    created_at  INTEGER NOT NULL,
    CHECK ((kind = 'personal') = (owner_id IS NOT NULL))
);
CREATE UNIQUE INDEX folders_shared_name ON folders (tenant_id, name) WHERE kind = 'shared';
CREATE UNIQUE INDEX folders_personal_owner ON folders (owner_id) WHERE kind = 'personal';

-- Permissions: a bit set (1 view, 2 create, 4 edit, 8 delete, 16 use).
CREATE TABLE folder_grants (
    folder_id    TEXT NOT NULL REFERENCES folders(id),
    principal_id TEXT NOT NULL REFERENCES principals(id),
    permissions  INTEGER NOT NULL,
    PRIMARY KEY (folder_id, principal_id)
);

CREATE TABLE connections (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    folder_id    TEXT NOT NULL REFERENCES folders(id),
    created_by   TEXT NOT NULL REFERENCES principals(id),
    connector    TEXT NOT NULL,
    auth         TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    -- Non-secret field values as a JSON object; secret ones live in connection_secrets.
    fields       TEXT NOT NULL,
    poll_interval_seconds INTEGER,
    health       TEXT NOT NULL DEFAULT 'unknown',
    health_reason TEXT,
    health_checked_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX connections_folder ON connections (tenant_id, folder_id);
CREATE UNIQUE INDEX connections_name ON connections (folder_id, name);

-- Secret field values, AES-256-GCM sealed; the associated data is the connection id and
-- the field name.
CREATE TABLE connection_secrets (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    field         TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    PRIMARY KEY (connection_id, field)
);

-- Invocation records outlive their connection: no foreign key.
CREATE TABLE invocations (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    principal_id      TEXT NOT NULL,
    connection_id     TEXT NOT NULL,
    folder_id         TEXT NOT NULL,
    connector         TEXT NOT NULL,
    connector_version TEXT NOT NULL,
    action            TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    duration_ms       REAL NOT NULL,
    outcome           TEXT NOT NULL,
    error_message     TEXT
);
CREATE INDEX invocations_tenant ON invocations (tenant_id, id);
CREATE INDEX invocations_connection ON invocations (connection_id, id);
