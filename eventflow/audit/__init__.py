"""Audit and time travel: the history of one thing, and the state of anything as of a moment."""
