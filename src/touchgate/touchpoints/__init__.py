"""The touchpoint registry: custom delivery channels of a project and their rules."""
