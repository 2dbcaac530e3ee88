"""The operator's console: a single page served by the gateway, talking to its admin API."""
