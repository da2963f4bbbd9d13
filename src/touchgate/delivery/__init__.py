"""The delivery engine: wire protocol, HTTP client, network guard, orders, workers, receipts."""
