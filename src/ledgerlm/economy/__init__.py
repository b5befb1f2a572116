"""ledgerlm economy."""
