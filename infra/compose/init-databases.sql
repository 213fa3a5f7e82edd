-- One database per service, as in the embedded stack. Each service applies its own
-- tables (and the outbox publication) at start-up.
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE psp;
