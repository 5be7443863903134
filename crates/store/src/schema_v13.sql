-- Posthorn embedded store, schema version 13 (issue 23): less written per
-- commit. A recipient's row is inserted once and updated at least twice
-- (claimed, then final), each time with a new status, and every commit
-- writes each page it touched whole to the WAL and again at the next
-- checkpoint. Two indexes changed with every status and served no query
-- of the hot paths (as on PostgreSQL, pg_schema_v5.sql):
-- - recipients_status (status, next_try): claims and the next due time
--   read recipients_due and recipients_leased; status counts read every
--   row anyway; a listing by status probes each message's recipients by
--   key;
-- - recipients_owner (lease_owner, of 'sending' rows): the queries by
--   owner (a restart giving back its leases, the takeover of a dead node,
--   cluster status) are rare and read the 'sending' rows through
--   recipients_leased, which holds exactly those rows.
DROP INDEX IF EXISTS recipients_status;
DROP INDEX IF EXISTS recipients_owner;
