-- Durable job lifecycle (issue 14):
-- attempts           keeps counting across replays (attempt numbers never repeat);
-- run_attempts       attempts since the job was accepted or last replayed (the backoff's exponent);
-- lost_attempts      attempts of this run lost to a crash (lease expired); at max_attempts the job
--                    becomes a dead letter, so a job that kills its worker every time cannot loop;
-- replayed_at        when an admin last replayed it: its retry window starts there, else at created_at;
-- attempt_started_at when the current (or last) attempt started, for the history of a lost attempt;
-- progress           what an attempt recorded durably for the next one (JSON), e.g. the user it created.
ALTER TABLE jobs ADD COLUMN run_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lost_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN replayed_at BIGINT;
ALTER TABLE jobs ADD COLUMN attempt_started_at BIGINT;
ALTER TABLE jobs ADD COLUMN progress TEXT;
UPDATE jobs SET run_attempts = attempts WHERE state IN ('queued', 'running');
