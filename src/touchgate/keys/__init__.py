"""API keys: created, listed and revoked by admins, each within its own reach."""
