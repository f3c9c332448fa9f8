-- The audit log: what administrators and operators did, and what they tried. One row per
-- act: when, who (a tenant's principal, an operator, or the offline `junction admin`
-- commands) with which token, what, on which record, and how it ended. `details` is JSON
-- with names, ids and settings; never a secret. `tenant_id` is the tenant the act concerns
-- (NULL for the service's catalog): that tenant's administrators read it.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    at          INTEGER NOT NULL,
    tenant_id   TEXT,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    token_id    TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,
    status      INTEGER,
    error_code  TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id);
CREATE INDEX audit_events_at ON audit_events (at);
