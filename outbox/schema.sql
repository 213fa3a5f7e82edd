-- The tables every service database needs for the outbox pattern and idempotent consumers.
-- Applied by `choreo up` (and by the tests) before the Debezium connector is deployed:
-- the publication must exist first because the connector is told not to create one.

-- Debezium reads each inserted row from the WAL. Rows are kept for a retention window
-- (CHOREO_OUTBOX_RETENTION_S, pruned by each service's job thread) so that the window
-- can be published again after the in-memory embedded broker lost its log (docs/stack.md).
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
-- Insertion order (per aggregate this is commit order: a service changes one aggregate
-- under its row lock) and age, for re-publishing and pruning the retention window.
-- (Checked first: ALTER TABLE takes an exclusive lock even when there is nothing to do,
-- and every service applies this file at each start.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'outbox'
                     AND column_name = 'created_at') THEN
        ALTER TABLE outbox ADD COLUMN IF NOT EXISTS seq bigserial;
        ALTER TABLE outbox ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
        CREATE INDEX IF NOT EXISTS outbox_created_at ON outbox (created_at);
    END IF;
END $$;

-- The polling relay (outbox/poller.py, docs/outbox.md "Polling relay"): each row's writing
-- transaction (top-level xid, as bigint so Debezium maps it as a plain int8), and, while
-- the database is in polling mode, a `seq` drawn only once that transaction has its xid
-- (the function below), so that a row whose seq is at most a published one and which is
-- not yet visible belongs to a transaction that every later snapshot lists as running.
-- The relay installs that default and its two indexes when it takes the database over
-- (outbox.poller.POLLING_ON) and CDC mode removes them: measured, they cost CDC mode
-- 3.8 CPU-ms per saga (docs/benchmarks.md). Debezium ignores both columns.
CREATE OR REPLACE FUNCTION outbox_next_seq() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN nextval('outbox_seq_seq');
END $$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'outbox'
                     AND column_name = 'xid') THEN
        ALTER TABLE outbox ADD COLUMN xid bigint NOT NULL
            DEFAULT pg_current_xact_id()::text::bigint;
    END IF;
END $$;

-- Where the polling relay of this database is: every row with seq <= after_seq has been
-- published, except rows of the transactions in `in_flight` (running when after_seq was
-- reached). Empty in CDC mode; pruning keeps every row a relay has not yet published.
CREATE TABLE IF NOT EXISTS outbox_relay (
    relay      text        PRIMARY KEY,
    after_seq  bigint      NOT NULL,
    in_flight  bigint[]    NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- And of transactions with xid >= running_from (the snapshot's xmax): a snapshot does not
-- list those (outbox/poller.py).
ALTER TABLE outbox_relay ADD COLUMN IF NOT EXISTS running_from bigint NOT NULL DEFAULT 0;

-- Wakes the polling relay after each commit that wrote outbox rows (NOTIFY is delivered at
-- commit, once per transaction). The trigger exists only while the database is in polling
-- mode: the relay creates it, `choreo up` in CDC mode drops it (NOTIFY serialises commits).
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('choreo_outbox', '');
    RETURN NULL;
END $$;

-- The guarantee behind effectively-once handling: one row per (consumer, event) written
-- in the handler's own transaction. Redis only short-cuts the lookup.
CREATE TABLE IF NOT EXISTS inbox (
    consumer    text        NOT NULL,
    event_id    uuid        NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- The event types each consumer handles, written when it starts: after a broker loss an
-- event whose every handler has it in its inbox is not published again (outbox.relay).
CREATE TABLE IF NOT EXISTS consumer_subscriptions (
    consumer    text        NOT NULL,
    event_type  text        NOT NULL,
    PRIMARY KEY (consumer, event_type)
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

-- Dead letters and the events parked behind them, per consumer. A key with an active
-- row here is blocked: its later events are parked in order instead of handled, while
-- other keys keep flowing. `choreo dlq replay|discard` request a status change that the
-- owning consumer carries out, because only it has the handlers.
CREATE TABLE IF NOT EXISTS dead_letters (
    seq            bigserial   PRIMARY KEY,
    consumer       text        NOT NULL,
    aggregate_key  text        NOT NULL,
    event_id       text,
    event_type     text,
    status         text        NOT NULL CONSTRAINT dead_letters_status_check CHECK (status IN
                       ('retrying', 'dead', 'parked', 'replay', 'discard',
                        'retried', 'replayed', 'discarded')),
    reason         text        NOT NULL,
    attempts       int         NOT NULL,
    topic          text        NOT NULL,
    partition      int         NOT NULL,
    "offset"       bigint      NOT NULL,
    headers        jsonb       NOT NULL,
    value          bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    retry_at       timestamptz,
    retry_since    timestamptz
);
-- `retrying`: a transient failure of one event, tried again on its key's own schedule
-- (`retry_at`) for the transient window counted from `retry_since`, while every other
-- key flows (outbox/pipeline.py). Databases made before it get the columns, the status
-- and the index of active entries that includes it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'dead_letters'
                     AND column_name = 'retry_at') THEN
        ALTER TABLE dead_letters ADD COLUMN retry_at timestamptz,
                                 ADD COLUMN retry_since timestamptz,
                                 DROP CONSTRAINT IF EXISTS dead_letters_status_check,
                                 ADD CONSTRAINT dead_letters_status_check CHECK (status IN
                                     ('retrying', 'dead', 'parked', 'replay', 'discard',
                                      'retried', 'replayed', 'discarded'));
        DROP INDEX IF EXISTS dead_letters_active;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS dead_letters_open
    ON dead_letters (consumer, aggregate_key, seq)
    WHERE status IN ('retrying', 'dead', 'parked', 'replay', 'discard');

-- Where each consumer is in each partition, kept in the consumer's own database rather
-- than in the broker (Kafka's "storing offsets outside Kafka"): no broker group
-- coordinator is needed to resume, and a position survives the broker. `log_id` is the
-- broker cluster id the offset belongs to: the embedded broker gets a new one on every
-- start (its log is in memory), and an offset of another log means "read from the start".
CREATE TABLE IF NOT EXISTS consumer_positions (
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    next_offset bigint      NOT NULL,
    log_id      text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- Dead letters are unique per event, not per Kafka offset: offsets start again at 0 when
-- a topic is recreated, and a new dead letter must never be mistaken for an old one.
-- `fingerprint` is the event id, or a digest of the bytes for a message without one.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'dead_letters'
                     AND column_name = 'fingerprint') THEN
        ALTER TABLE dead_letters ADD COLUMN fingerprint text;
        ALTER TABLE dead_letters
            DROP CONSTRAINT IF EXISTS dead_letters_consumer_topic_partition_offset_key;
        CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_fingerprint
            ON dead_letters (consumer, fingerprint);
    END IF;
END $$;

-- An HTTP intake's Idempotency-Keys (`outbox.http.claim`): claimed in the transaction of
-- the write they guard, with the answer given, so a retry gets that answer again and a
-- key reused with another request is refused. Kept as long as the inbox
-- (CHOREO_INBOX_RETENTION_S), pruned by the intake (`outbox.http.serve`).
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         text        PRIMARY KEY,
    fingerprint text        NOT NULL,
    status      int,
    body        jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
