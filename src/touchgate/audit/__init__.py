"""The audit log: one entry per write, in the write's own transaction."""
