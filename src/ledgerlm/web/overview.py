"""The home page's figures: how many Datanets, contributions, models and epochs, and the chain head."""

from __future__ import annotations

from ledgerlm.economy import list_epochs
from ledgerlm.errors import LedgerError


def overview(node) -> dict:
    datanets = node.datanets.list(None)
    counts: dict[str, int] = {}
    for d in datanets:
        for state, n in d.counts.items():
            counts[state] = counts.get(state, 0) + n
    head = None
    try:
        head = node.chain.head()
    except LedgerError:  # a remote chain that is down: the page still shows what the node holds
        head = None
    # the models anyone may see: an unpublished model of a private Datanet is not even counted
    models = [m for m in (node.factory.shown_to(r, None) for r in node.factory.list()) if m is not None]
    return {"datanets": datanets[:5], "datanet_count": len(datanets), "contribution_counts": counts,
            "models": models, "epochs": list_epochs(node.db)[-3:], "head": head, "info": node.info(operator=False)}
