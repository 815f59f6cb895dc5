"""The wire contract: API bodies (api), events (events) and their encodings (encoding)."""
