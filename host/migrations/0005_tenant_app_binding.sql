-- A connection made with its tenant's predefined OAuth app remembers it: the endpoint
-- fields and the scopes the operator fixed (JSON), checked every time a token is asked for,
-- whatever version of the connector runs then. NULL for every other connection.
ALTER TABLE connections ADD COLUMN tenant_oauth_app TEXT;

-- INSERT OR REPLACE deletes the row it replaces without firing the delete trigger: refuse
-- any insert of a version that exists, so that a published version cannot be rewritten that
-- way either.
CREATE TRIGGER connector_versions_never_replaced BEFORE INSERT ON connector_versions
WHEN EXISTS (
    SELECT 1 FROM connector_versions WHERE name = NEW.name AND version = NEW.version
)
BEGIN
    SELECT RAISE(ABORT, 'a published connector version is immutable');
END;
