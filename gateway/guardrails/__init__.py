"""Guardrails: find personal data and credentials in what goes to a model and what comes back;
redact them, block the request or answer, or flag it, by rules per key, project and model."""
