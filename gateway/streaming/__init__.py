"""Server-sent events: the sans-IO codec (`sse`) and the relay to clients."""
