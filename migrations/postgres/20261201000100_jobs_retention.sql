-- Retention (issue 16): a succeeded job's personal data (payload, result, progress, error texts) is
-- purged `retention_days` after it succeeded, and purged_at says when; the row itself, with its
-- idempotency key and content hash, stays until `dedupe_window_days`, so a late repeat of the event
-- is still recognised. Each sweep finds its rows through its own partial index: the jobs still to
-- purge, and the succeeded jobs by age. Neither holds a queued job, so the intake's insert writes
-- neither (a job enters them when it succeeds, and leaves the first when it is purged).
ALTER TABLE jobs ADD COLUMN purged_at BIGINT;
CREATE INDEX jobs_to_purge ON jobs (finished_at) WHERE state = 'succeeded' AND purged_at IS NULL;
CREATE INDEX jobs_succeeded ON jobs (finished_at) WHERE state = 'succeeded';
