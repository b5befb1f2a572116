"""The home page's figures: how many Datanets, contributions, models and epochs, and the chain head."""

from __future__ import annotations

from ledgerlm.economy import list_epochs
from ledgerlm.errors import LedgerError


def overview(node) -> dict:
    # the public Datanets' names and a count per state, not every Datanet loaded on each view of the page
    names = node.datanets.listed_names(None)
    newest = [node.datanets.get(name) for name in names[::-1][:5]]
    counts = node.datanets.public_contribution_counts()
    head = None
    try:
        head = node.chain.head()
    except LedgerError:  # a remote chain that is down: the page still shows what the node holds
        head = None
    # the models anyone may see: an unpublished model of a private Datanet is not even counted
    models = [m for m in (node.factory.shown_to(r, None) for r in node.factory.list()) if m is not None]
    return {"datanets": newest, "datanet_count": len(names), "contribution_counts": counts,
            "models": models, "epochs": list_epochs(node.db)[-3:], "head": head, "info": node.info(operator=False)}
