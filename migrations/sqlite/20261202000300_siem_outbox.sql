-- The SIEM outbox (issue 18): every audit-worthy decision as a record, written in the transaction of
-- the state change it tells of, and delivered from here to each configured destination.
-- `record` is the JSON a destination receives (eventId, correlationId, kind, subject, time, body).
-- AUTOINCREMENT: ids are never reused, so they order records for good (delivery goes by id).
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    -- When the decision was made (Unix milliseconds), and its RFC 5424 severity (0 to 7).
    created_at BIGINT NOT NULL,
    severity   SMALLINT NOT NULL,
    -- Destinations that have not confirmed the record yet; it is deleted when this reaches 0.
    pending    INTEGER NOT NULL,
    record     TEXT NOT NULL
);
-- One row per record and destination still to deliver it: each destination reads its own rows in
-- id order (the primary key), and deletes them once the destination confirmed.
CREATE TABLE outbox_pending (
    destination TEXT NOT NULL,
    record_id   INTEGER NOT NULL,
    PRIMARY KEY (destination, record_id)
) WITHOUT ROWID;
-- Each destination's delivery state, shared by every replica: who delivers to it (a lease, so one
-- process at a time sends, in order), what was delivered, and the last failure.
CREATE TABLE outbox_destinations (
    name              TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    delivered         BIGINT NOT NULL DEFAULT 0,
    failures          BIGINT NOT NULL DEFAULT 0,
    last_delivered_at BIGINT,
    last_error        TEXT,
    last_error_at     BIGINT,
    backoff_until     BIGINT,
    leased_by         TEXT,
    lease_until       BIGINT
);
