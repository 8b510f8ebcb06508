"""eventflow: the machine-learning lifecycle as a log of events."""

__version__ = "0.1.0"
