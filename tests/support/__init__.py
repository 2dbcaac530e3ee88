"""Test helpers: a real redis-server, a stub upstream, and gateway configs."""
