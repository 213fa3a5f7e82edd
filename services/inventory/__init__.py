"""The inventory participant: reserves stock for orders, sells or releases it as the saga ends."""
