-- Directory-sync discrepancies: what Genesys answered differently from what a PATCH asked for.
CREATE TABLE discrepancies (
    id          TEXT PRIMARY KEY,
    audit_id    TEXT NOT NULL,
    external_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    field       TEXT NOT NULL,
    expected    TEXT NOT NULL,
    actual      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX discrepancies_created ON discrepancies (created_at);
CREATE INDEX jobs_kind_finished ON jobs (kind, finished_at);
