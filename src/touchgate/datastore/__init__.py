"""The user data store: attribute catalogue, users (imported in bulk) and events."""
