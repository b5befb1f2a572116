"""ledgerlm validation."""
