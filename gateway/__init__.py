"""An OpenAI Responses API gateway: keys, limits, routing, state and streaming."""

__version__ = "0.1.0"
