"""ledgerlm web."""
