-- The SHA-256 (hex) of an event's content, kept with its idempotency key: the same event id sent
-- again with other content is a conflict, not a duplicate. Rows stored before this column have none
-- and count as the same content (they are answered as duplicates, as before).
ALTER TABLE jobs ADD COLUMN content_hash TEXT;
