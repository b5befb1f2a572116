"""ledgerlm serving."""
