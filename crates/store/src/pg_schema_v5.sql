-- Posthorn on PostgreSQL, schema version 5: less work per recipient and
-- per message (issue 18, bench/cluster.sh).
--
-- A recipient's row is inserted once and updated at least twice (claimed,
-- then final); each update changes its status, which partial indexes name,
-- so none is a HOT update and every index of the table gets an entry for
-- each. Two of those indexes served no query of the hot paths:
-- - recipients_status (status): status counts read the whole table anyway
--   and a listing by status probes each message's recipients by key;
-- - recipients_owner (lease_owner, of 'sending' rows): the queries by
--   owner (a restart giving back its leases, the takeover of a dead node,
--   cluster status) are rare and read the 'sending' rows through
--   recipients_leased, which holds exactly those rows.
DROP INDEX IF EXISTS recipients_status;
DROP INDEX IF EXISTS recipients_owner;

-- Contents are compressed with lz4 where the server has it (PostgreSQL 14
-- built with lz4, as the distributions' packages are): pglz, the default,
-- cost more CPU than any statement of an enqueue. Elsewhere they stay as
-- they were.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE message_contents ALTER COLUMN content SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;
