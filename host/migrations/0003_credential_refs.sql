-- Secret fields whose value lives in an external vault (credential assets): where the
-- value is (a configured store's name, the secret's path, the key in it), never the
-- value, which the service resolves when the connection is used and keeps in memory only.
CREATE TABLE connection_secret_refs (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    field         TEXT NOT NULL,
    store         TEXT NOT NULL,
    path          TEXT NOT NULL,
    key           TEXT NOT NULL,
    PRIMARY KEY (connection_id, field)
);
