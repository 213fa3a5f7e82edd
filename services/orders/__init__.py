"""The order service: HTTP intake of orders, and the saga's outcome as seen by the customer."""
