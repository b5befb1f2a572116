"""What the example agents share: their command line (home, node, agent) and opening the agent's wallet."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ledgerlm.agents import AgentWallet


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--home", default=os.environ.get("LEDGERLM_HOME", os.path.expanduser("~/.ledgerlm")),
                   help="the home holding the agent (`ledgerlm agent create`) and its key")
    p.add_argument("--node", default=os.environ.get("LEDGERLM_NODE", "http://127.0.0.1:8547"),
                   help="the running node (`ledgerlm serve`)")
    p.add_argument("--agent", required=True, help="the agent's name")
    return p


def open_wallet(args) -> AgentWallet:
    passphrase = os.environ.get("LEDGERLM_PASSPHRASE")
    if passphrase is None:
        sys.exit("set LEDGERLM_PASSPHRASE to unlock the agent's key")
    return AgentWallet.open(args.home, args.agent, args.node, passphrase)


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
