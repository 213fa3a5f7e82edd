-- Generated from stack/manifest.py by `python -m choreo.stack.compose`: one database
-- per service, as in the embedded stack. Each service applies its own tables (and
-- the outbox publication) at start-up.
CREATE DATABASE psp;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE orders;
CREATE DATABASE wallet;
CREATE DATABASE users;
CREATE DATABASE notifier;
CREATE DATABASE notification;
