-- The psp's ledger. Applied by the service at start-up; every statement is idempotent.
--
-- Exactness lives in constraints, not only in code: one capture per idempotency key
-- (charges.idempotency_key is UNIQUE), one refund per key, positive amounts. The
-- service additionally serialises requests per key with a transaction-scoped advisory
-- lock, so the constraints are the backstop that turns any logic slip into an aborted
-- transaction rather than a second capture.

-- One row per capture. Declines and transient failures never capture, so they never
-- appear here: they live only as the stored response of their idempotency key.
CREATE TABLE IF NOT EXISTS charges (
    id              text        PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    reference       text        NOT NULL,
    amount_cents    bigint      NOT NULL CHECK (amount_cents > 0),
    currency        text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS charges_reference ON charges (reference);

-- One row per refund; the refunds of a charge never add up to more than its amount
-- (checked under a row lock on the charge, in the transaction that inserts the refund).
CREATE TABLE IF NOT EXISTS refunds (
    id              text        PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    charge_id       text        NOT NULL REFERENCES charges (id),
    amount_cents    bigint      NOT NULL CHECK (amount_cents > 0),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS refunds_charge_id ON refunds (charge_id);

-- What the psp answered for each idempotency key, so a retry gets the same answer.
--   done:      the response is final (any status below 500) and is replayed byte for byte.
--   retryable: the last attempt failed transiently (5xx) without side effects; the next
--              request with the same body runs again. `attempts` counts the runs.
-- There is deliberately no committed "in flight" state: a request in flight holds a
-- transaction-scoped advisory lock on its key instead. A row committed as in flight
-- would outlive a crash of the psp and block its key forever; the lock dies with the
-- connection, and the claim, the capture and the stored response commit together.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key             text        PRIMARY KEY,
    request_hash    text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('done', 'retryable')),
    attempts        integer     NOT NULL CHECK (attempts > 0),
    response_status integer     NOT NULL,
    response_body   text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((state = 'done') = (response_status < 500))
);
