-- The mirror (issue 17): what Genesys last confirmed for each user the service manages, so an
-- update is one PATCH guarded by the mirrored version instead of a lookup and a PATCH.
-- `attributes` is the user as Genesys returned it (JSON, without id, meta and groups); `groups` the
-- ids of the groups it is known to be in (JSON array). user_name and email are lower-cased: Genesys
-- compares them without case, and a manager is found by either.
CREATE TABLE genesys_users (
    scim_id      TEXT PRIMARY KEY,
    external_id  TEXT,
    user_name    TEXT NOT NULL,
    email        TEXT,
    version      TEXT,
    attributes   TEXT NOT NULL,
    groups       TEXT NOT NULL,
    confirmed_at BIGINT NOT NULL
);
CREATE INDEX genesys_users_external_id ON genesys_users (external_id);
CREATE INDEX genesys_users_user_name ON genesys_users (user_name);
CREATE INDEX genesys_users_email ON genesys_users (email);
