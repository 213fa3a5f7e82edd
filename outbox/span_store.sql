-- Finished spans of every choreo process (outbox/span_store.py), read back by trace id.
CREATE TABLE IF NOT EXISTS spans (
    trace_id   text        NOT NULL,
    span_id    text        NOT NULL,
    parent_id  text,
    service    text        NOT NULL,
    name       text        NOT NULL,
    kind       text        NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    status     text        NOT NULL,
    attributes jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_by_end ON spans (ended_at);
