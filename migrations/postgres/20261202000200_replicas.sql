-- Replicas whose workers run (issue 17). Genesys limits requests per OAuth client, not per process,
-- so replicas on one job store share the budget: each writes its heartbeat here every few seconds
-- and paces itself at the configured rate divided by the replicas heard from recently. A replica
-- deletes its row when it stops; a crashed one ages out of the count, and old rows are deleted by
-- whichever replica beats next. Times are Unix milliseconds, as in the jobs table.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
