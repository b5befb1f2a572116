"""ledgerlm: an open, attributed AI economy on one machine or many."""

__version__ = "0.1.0"
