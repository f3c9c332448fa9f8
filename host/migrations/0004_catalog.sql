-- The connector catalog: published versions (immutable), what is installed, and the
-- governance policies of tenants.

-- A published connector version. The component's bytes live on disk, content-addressed
-- by `digest` (lowercase hex SHA-256) in the data directory. Never updated, never deleted.
CREATE TABLE connector_versions (
    name              TEXT NOT NULL,
    version           TEXT NOT NULL,
    title             TEXT NOT NULL,
    release           TEXT NOT NULL CHECK (release IN ('preview', 'ga')),
    interface_version TEXT NOT NULL,
    digest            TEXT NOT NULL,
    size_bytes        INTEGER NOT NULL,
    published_at      INTEGER NOT NULL,
    -- An operator id, or `startup` for a component given to `junction serve --connectors`.
    published_by      TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TRIGGER connector_versions_immutable BEFORE UPDATE ON connector_versions
BEGIN
    SELECT RAISE(ABORT, 'a published connector version is immutable');
END;
CREATE TRIGGER connector_versions_never_unpublished BEFORE DELETE ON connector_versions
BEGIN
    SELECT RAISE(ABORT, 'a published connector version cannot be unpublished');
END;

-- The installed connectors and the version each runs.
CREATE TABLE connector_installs (
    name           TEXT PRIMARY KEY,
    active_version TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    FOREIGN KEY (name, active_version) REFERENCES connector_versions (name, version)
);

-- Every version that has been active, and when it last became active.
CREATE TABLE connector_activations (
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    activated_at INTEGER NOT NULL,
    PRIMARY KEY (name, version),
    FOREIGN KEY (name, version) REFERENCES connector_versions (name, version)
);

-- Versions an operator does not want offered as upgrades.
CREATE TABLE connector_skips (
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    skipped_at INTEGER NOT NULL,
    PRIMARY KEY (name, version),
    FOREIGN KEY (name, version) REFERENCES connector_versions (name, version)
);

-- Operators run the service: they publish and install connectors and set policies. They
-- belong to no tenant.
CREATE TABLE operators (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
-- Stored as the SHA-256 of the token, as api_tokens are.
CREATE TABLE operator_tokens (
    id          TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators(id),
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- A tenant's governance policy. JSON columns: `enabled_connectors` an array of names or
-- NULL for all; `disabled_connectors` an array; `allowed_auth_types` an object from
-- connector name (or `*`) to an array of auth type names.
CREATE TABLE tenant_policies (
    tenant_id           TEXT PRIMARY KEY REFERENCES tenants(id),
    enabled_connectors  TEXT,
    disabled_connectors TEXT NOT NULL,
    allowed_auth_types  TEXT NOT NULL,
    updated_at          INTEGER NOT NULL
);

-- OAuth apps a tenant predefines for a connector: its users' new connections use them
-- without seeing the secret. `endpoint_fields` (JSON object) fixes the connection fields
-- the connector builds its OAuth endpoints from, so the secret goes only where the operator
-- said. The client secret is AES-256-GCM sealed; the associated data is the tenant id and
-- the connector name.
CREATE TABLE tenant_oauth_apps (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    connector  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    endpoint_fields TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, connector)
);
