-- Only finished jobs are looked up by (kind, finished_at): the reports ask for jobs that finished
-- after a time. Queued and running jobs stay out of the index, so an accepted webhook's insert
-- updates one index fewer (its finished_at is NULL until a worker finishes it).
DROP INDEX jobs_kind_finished;
CREATE INDEX jobs_kind_finished ON jobs (kind, finished_at) WHERE finished_at IS NOT NULL;
