"""Projects (independent business units) and their spaces (team areas)."""
