"""ledgerlm attribution."""
