-- The notification service's own tables; applied at every start after the library's.

-- How to reach a customer, from the users service's events.
CREATE TABLE IF NOT EXISTS recipients (
    customer_id text PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    phone       text,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'none'))
);

-- Whose order it is, from OrderPlaced.
CREATE TABLE IF NOT EXISTS order_customers (
    order_id    text PRIMARY KEY,
    customer_id text NOT NULL
);

-- One row per order and kind: the row lock serialises the senders of one message, and
-- its status says whether it went. `pending` waits for the order's OrderPlaced (a refund
-- read from another topic can come first).
CREATE TABLE IF NOT EXISTS notifications (
    order_id    text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN
                    ('confirmed', 'rejected', 'cancelled', 'refunded')),
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN
                    ('pending', 'sent', 'skipped')),
    channel     text,
    message_id  bigint,
    detail      text        NOT NULL DEFAULT '',  -- what the message says beyond its kind
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (order_id)
    WHERE status = 'pending';
