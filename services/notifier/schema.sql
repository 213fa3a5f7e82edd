-- The notifier's ledger: one row per message it accepted, i.e. per message a customer
-- received. A request with an Idempotency-Key seen before gets that message back and adds
-- no row (its `requests` counts how often it was asked).
CREATE TABLE IF NOT EXISTS messages (
    id              bigserial   PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    channel         text        NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient       text        NOT NULL,
    reference       text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    requests        int         NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_reference ON messages (reference);
-- Attempts per key, committed whether or not a message was accepted: the +flaky
-- recipient fails the first attempt of each key.
CREATE TABLE IF NOT EXISTS attempts (
    idempotency_key text PRIMARY KEY,
    attempts        int  NOT NULL
);
