"""ledgerlm factory."""
