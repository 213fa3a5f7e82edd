-- The wallet service's own tables; applied at every start after the library's.

-- A customer's money and points; a row appears with the first top-up or order.
CREATE TABLE IF NOT EXISTS wallets (
    customer_id   text        PRIMARY KEY,
    balance_cents bigint      NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
    points        bigint      NOT NULL DEFAULT 0 CHECK (points >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every movement of money: the balance is their sum, which the chaos invariants check.
-- One debit and one refund per order at most, as a constraint rather than a hope.
CREATE TABLE IF NOT EXISTS wallet_entries (
    id           bigserial   PRIMARY KEY,
    customer_id  text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('topup', 'debit', 'refund')),
    order_id     text,
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'topup') = (order_id IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS wallet_entries_once ON wallet_entries (order_id, kind)
    WHERE order_id IS NOT NULL;

-- What the wallet knows of each order: who placed it and how it is paid (OrderPlaced),
-- its total (StockReserved), how it ended, and the points it earned. Created by
-- whichever event of the order comes first, and the lock of that order's handlers.
--
--   awaiting   not debited: waiting for the customer, the method or the total; also
--              every card order, which the wallet never debits
--   debited    paid from the balance (WalletDebited)
--   declined   the balance was short (WalletDebitDeclined)
--   refunded   debited, then cancelled: the amount went back (WalletRefunded)
--   cancelled  cancelled before any debit: a late reservation never debits
CREATE TABLE IF NOT EXISTS wallet_orders (
    order_id       text        PRIMARY KEY,
    customer_id    text,
    method         text        CHECK (method IN ('card', 'wallet')),
    total_cents    bigint      CHECK (total_cents > 0),
    deadline_at    timestamptz,
    status         text        NOT NULL DEFAULT 'awaiting' CHECK (status IN
                       ('awaiting', 'debited', 'declined', 'refunded', 'cancelled')),
    cancel_reason  text,
    points         bigint      NOT NULL DEFAULT 0 CHECK (points >= 0),
    points_state   text        NOT NULL DEFAULT 'none' CHECK (points_state IN
                       ('none', 'credited', 'reversed')),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
