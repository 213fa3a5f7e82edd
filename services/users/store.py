"""The users service's SQL: one row per customer, changed under its row lock."""

INSERT_CUSTOMER = """
INSERT INTO customers (id, name, email, phone, channel, address, marketing_allowed)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
GET_CUSTOMER = """
SELECT id, name, email, phone, channel, address, marketing_allowed, blocked, block_reason,
       created_at, updated_at
FROM customers WHERE id = %s
"""
LOCK_CUSTOMER = "SELECT email, phone FROM customers WHERE id = %s FOR UPDATE"
SET_PREFERENCES = """
UPDATE customers SET channel = %s, address = %s, marketing_allowed = %s, updated_at = now()
WHERE id = %s
"""
SET_STATUS = """
UPDATE customers SET blocked = %s, block_reason = %s, updated_at = now() WHERE id = %s
"""
