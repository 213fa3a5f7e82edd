-- The order service's own tables (outbox/schema.sql adds outbox, inbox, dead_letters).

CREATE TABLE IF NOT EXISTS orders (
    id              uuid        PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    request_hash    text        NOT NULL,
    customer_id     text        NOT NULL,
    items           jsonb       NOT NULL,
    payment_token   text        NOT NULL,
    status          text        NOT NULL CHECK (status IN
                        ('PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED')),
    reason          text,
    total_cents     bigint,
    deadline_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Who pays (OrderPlaced.v2): card, through payments and the psp, or wallet.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS payment_method text NOT NULL DEFAULT 'card';
-- The saga's trace, so that a cancel or a deadline continues it instead of starting anew.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS traceparent text NOT NULL DEFAULT '';

-- The worker reads what settled lately for its saga metrics (services/orders/outcomes.py).
CREATE INDEX IF NOT EXISTS orders_updated ON orders (updated_at);

-- The deadline sweeper only ever looks at pending orders.
CREATE INDEX IF NOT EXISTS orders_pending_deadline ON orders (deadline_at)
    WHERE status = 'PENDING';

-- Every event of a saga as this service saw it: what GET /orders/{id} shows.
CREATE TABLE IF NOT EXISTS order_history (
    seq         bigserial   PRIMARY KEY,
    order_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    event_id    uuid        NOT NULL,
    source      text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}',
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS order_history_order ON order_history (order_id, seq);

-- What orders knows of customers, from the users service's events (customer.events):
-- only whether one is blocked. A customer not in it is a guest, whose orders are taken.
CREATE TABLE IF NOT EXISTS customers (
    id          text        PRIMARY KEY,
    blocked     boolean     NOT NULL DEFAULT false,
    reason      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
