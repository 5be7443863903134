-- Posthorn on PostgreSQL, schema version 8 (the console's webhook page,
-- issue 21): the HTTP status of a webhook delivery's last POST, shown with
-- its recent deliveries. NULL: no answer yet (or none: a transport error).
ALTER TABLE webhook_deliveries ADD COLUMN last_status INTEGER;
