"""Flower strategies shipped with fedids (usable from any Flower app)."""
