"""`python -m ledgerlm` runs the command line."""

from ledgerlm.cli import main

main()
