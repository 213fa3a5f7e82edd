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

-- Spans whose trace is not decided yet (outbox/tail_sampling.py): kept ones move to
-- spans, the others are deleted. Unlogged: a crash loses only undecided traces, and the
-- writes make no WAL for the outbox slots to decode.
CREATE UNLOGGED TABLE IF NOT EXISTS recent_spans (LIKE spans INCLUDING DEFAULTS);
CREATE INDEX IF NOT EXISTS recent_spans_by_trace ON recent_spans (trace_id);
-- What tail sampling decided so far, kept and dropped (for benchmarks and operators).
CREATE TABLE IF NOT EXISTS span_sampling (
    kept   boolean PRIMARY KEY,
    traces bigint  NOT NULL,
    spans  bigint  NOT NULL,
    bytes  bigint  NOT NULL
);
