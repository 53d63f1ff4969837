"""Errors a user can fix (bad file, missing column, bad setting), kept apart from bugs.

Commands print these as one line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations


class AlertsInputError(ValueError):
    """An input the user supplied (model, flow file, option, setting) cannot be used."""
