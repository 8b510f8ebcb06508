"""Alerts: metric rules that fire once when they become true and resolve once when they
clear, and alerts raised by training code (issue 17)."""
