"""``touchgate doctor``: a conformance suite that checks a touchpoint endpoint
before it goes live (CLI, API and console)."""
