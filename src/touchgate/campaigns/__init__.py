"""Campaigns: audiences, triggers, strategies, runs and their results."""
