"""Touchgate: custom touchpoints for marketing campaigns."""

__version__ = "0.1.0"
