-- The users service's own table, applied at every start after the library's.
CREATE TABLE IF NOT EXISTS customers (
    id                text        PRIMARY KEY,
    name              text        NOT NULL,
    email             text,
    phone             text,
    channel           text        NOT NULL CHECK (channel IN ('email', 'sms', 'none')),
    address           text        NOT NULL,
    marketing_allowed boolean     NOT NULL,
    blocked           boolean     NOT NULL DEFAULT false,
    block_reason      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
