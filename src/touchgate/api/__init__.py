"""Shared pieces of the REST layer: auth, request context, list envelopes."""
