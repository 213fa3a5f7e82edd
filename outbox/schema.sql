-- The tables every service database needs for the outbox pattern and idempotent consumers.
-- Applied by `choreo up` (and by the tests) before the Debezium connector is deployed:
-- the publication must exist first because the connector is told not to create one.

-- An outbox row lives only inside its transaction: the writer inserts and deletes it in
-- the same transaction, so Debezium still reads the insert from the WAL, while the table
-- itself never grows and needs no clean-up job (see docs/outbox.md).
CREATE TABLE IF NOT EXISTS outbox (
    id            uuid        PRIMARY KEY,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       bytea       NOT NULL,
    dataschema    text        NOT NULL,
    source        text        NOT NULL,
    specversion   text        NOT NULL DEFAULT '1.0',
    occurred_at   text        NOT NULL,
    traceparent   text        NOT NULL DEFAULT ''
);

-- The guarantee behind effectively-once handling: one row per (consumer, event) written
-- in the handler's own transaction. Redis only short-cuts the lookup.
CREATE TABLE IF NOT EXISTS inbox (
    consumer    text        NOT NULL,
    event_id    uuid        NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Debezium writes here on every heartbeat so an idle outbox never pins WAL.
CREATE TABLE IF NOT EXISTS debezium_heartbeat (
    id      int         PRIMARY KEY,
    beat_at timestamptz NOT NULL
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'choreo_outbox') THEN
        -- Inserts only for the outbox: the delete that follows each insert is of no
        -- interest downstream and would only make the EventRouter log a warning.
        CREATE PUBLICATION choreo_outbox FOR TABLE outbox, debezium_heartbeat
            WITH (publish = 'insert, update');
    END IF;
END $$;
