"""Canary app for the signed-bundle tests (never part of fedids itself)."""
