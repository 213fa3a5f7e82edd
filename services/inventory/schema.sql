-- The inventory's own tables. Applied by the service at start-up; every statement is
-- idempotent. Stock exactness lives in constraints as well as in code: no counter can go
-- negative, so a logic slip aborts its transaction instead of overselling.

-- One row per SKU. A unit is in exactly one of three counters, so for every SKU
-- "stock put in" = available + reserved + sold at quiescence; only `set_stock` (an
-- operator's restock or write-off) changes that sum.
CREATE TABLE IF NOT EXISTS stock_items (
    sku              text        PRIMARY KEY,
    name             text        NOT NULL,
    unit_price_cents bigint      NOT NULL CHECK (unit_price_cents >= 0),
    available        integer     NOT NULL CHECK (available >= 0),
    reserved         integer     NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold             integer     NOT NULL DEFAULT 0 CHECK (sold >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per order the inventory has heard of, whichever event came first. The row is
-- also the order's mutex: every handler locks it before touching stock, so the events of
-- one order are applied one at a time even when they arrive on different topics.
--   reserved   every line is held until expires_at
--   sold       the order was confirmed; the units left stock for good
--   released   the units went back to available (reason says why)
--   failed     a line was short; nothing was reserved
--   cancelled  a cancellation arrived before OrderPlaced: remembered so that the late
--              OrderPlaced reserves nothing
CREATE TABLE IF NOT EXISTS reservations (
    order_id    text        PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN
                    ('reserved', 'sold', 'released', 'failed', 'cancelled')),
    reason      text        CHECK (reason IN ('payment_declined', 'order_cancelled', 'expired')),
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'reserved' OR expires_at IS NOT NULL),
    CHECK ((status IN ('released', 'cancelled')) = (reason IS NOT NULL))
);
-- The saga's trace, so the expiry sweeper's StockReleased continues it.
ALTER TABLE reservations ADD COLUMN IF NOT EXISTS traceparent text NOT NULL DEFAULT '';

-- What the expiry sweeper scans: only reservations still holding stock.
CREATE INDEX IF NOT EXISTS reservations_expiring
    ON reservations (expires_at) WHERE status = 'reserved';

-- The units and prices a reservation took; kept after release or sale as its record.
CREATE TABLE IF NOT EXISTS reservation_lines (
    order_id         text    NOT NULL REFERENCES reservations (order_id),
    sku              text    NOT NULL REFERENCES stock_items (sku),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint  NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, sku)
);
