-- The payments service's own table; applied at start-up after outbox/schema.sql, so every
-- statement is idempotent.

-- One row per order payments has heard of, created by whichever of OrderPlaced,
-- StockReserved or OrderCancelled arrives first (they come from two topics, in any
-- order). The row is also the lock that serialises the handlers of one order.
--
--   awaiting   token and/or reserved total still unknown, nothing charged; or, with a
--              row in charge_attempts, charging: no final answer from the psp yet
--   captured   charged once through the psp (key charge:<order_id>)
--   declined   the psp declined; nothing captured
--   refunded   cancelled after a capture and refunded in full (key refund:<order_id>)
--   cancelled  cancelled before any charge: a late reservation never charges, nor one
--              read after the order's deadline (deadline_at), when orders cancels anyway
CREATE TABLE IF NOT EXISTS payments (
    order_id        text        PRIMARY KEY,
    status          text        NOT NULL DEFAULT 'awaiting' CHECK (status IN
                        ('awaiting', 'captured', 'declined', 'refunded', 'cancelled')),
    token           text,
    reserved_cents  bigint      CHECK (reserved_cents > 0),
    charge_id       text,
    captured_cents  bigint      CHECK (captured_cents > 0),
    refunded_cents  bigint      CHECK (refunded_cents > 0),
    decline_reason  text,
    cancel_reason   text,
    cancelled_at    timestamptz,
    deadline_at     timestamptz,  -- from OrderPlaced: past it, nothing is charged any more
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- The statuses in constraints, so a slip in the code aborts instead of lying.
    CHECK ((status IN ('captured', 'refunded'))
           = (charge_id IS NOT NULL AND captured_cents IS NOT NULL)),
    CHECK ((status = 'refunded') = (refunded_cents IS NOT NULL)),
    CHECK ((status = 'declined') = (decline_reason IS NOT NULL)),
    CHECK (status NOT IN ('refunded', 'cancelled') OR cancel_reason IS NOT NULL),
    CHECK ((cancel_reason IS NULL) = (cancelled_at IS NULL))
);

-- Added after the first release (checked first: ALTER TABLE takes an exclusive lock even
-- when there is nothing to do, and every start applies this file).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns
                   WHERE table_name = 'payments' AND column_name = 'deadline_at') THEN
        ALTER TABLE payments ADD COLUMN deadline_at timestamptz;
    END IF;
END $$;

-- The charging state: one row per order whose charge request may have reached the psp.
-- It is committed on a connection of its own *before* the request is sent, so it
-- survives the consumer's transaction rolling back or its process dying mid-call; a
-- payment that has one and is still 'awaiting' is charging, and every later event of
-- the order re-sends exactly this request (key charge:<order_id>) until the psp's answer
-- is final. Insert-only: the consumer's transaction never writes or locks these rows, so
-- the separate commit can never wait for it (see attempts.py). No foreign key either:
-- the payments row may still be uncommitted in the consumer's transaction.
CREATE TABLE IF NOT EXISTS charge_attempts (
    order_id      text        PRIMARY KEY,
    token         text        NOT NULL,
    amount_cents  bigint      NOT NULL CHECK (amount_cents > 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
