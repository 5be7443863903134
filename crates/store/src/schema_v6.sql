-- Posthorn embedded store, schema version 6: the submitting client's
-- address, kept for the operator (a private Received field leaves it out).
ALTER TABLE messages ADD COLUMN client_ip TEXT;
