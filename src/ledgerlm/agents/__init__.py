"""ledgerlm agents."""
