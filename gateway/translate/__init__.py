"""Sans-IO translation between the Responses API and other upstream APIs (one module per API)."""
