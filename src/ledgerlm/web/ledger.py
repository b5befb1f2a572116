"""The ledger explorer: blocks, transactions with decoded contract events, and addresses."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from ledgerlm.errors import LedgerError
from ledgerlm.web.render import page
from ledgerlm.web.validation import _address

router = APIRouter()

RECENT_BLOCKS = 20
ADDRESS_SCAN_BLOCKS = 200  # how far back an address page looks for its transactions
# and how many transactions it reads at most on the way: each is a receipt and a transaction from the chain, and
# anyone may open the page (busy blocks made one view about 600 chain calls)
ADDRESS_SCAN_TXS = 200
BLOCK_DIGITS = 19  # a block number the database and the chain hold (below 2**63)
TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}\Z")


def _names(node) -> dict[str, str]:
    """Contract name by lower-case address, so pages say `Registry` rather than a hash."""
    names = {node.account.address.lower(): "this node"}
    if node.on_chain:
        names.update({a.lower(): n for n, a in node.deployment.addresses.items()})
    return names


@router.get("/web/ledger")
def ledger_home(request: Request, q: str = ""):
    q = q.strip()
    if q:
        if q.isascii() and q.isdigit() and len(q) <= BLOCK_DIGITS:  # other text is an address or a hash
            return RedirectResponse(f"/web/ledger/blocks/{int(q)}", status_code=303)
        if TX_HASH.match(q):
            return RedirectResponse(f"/web/ledger/tx/{q}", status_code=303)
        return RedirectResponse(f"/web/ledger/address/{_address(q)}", status_code=303)
    node = request.app.state.node
    head = node.chain.block("latest")
    blocks = [head] + [node.chain.block(n) for n in range(head.number - 1, max(-1, head.number - RECENT_BLOCKS), -1)]
    contracts = node.deployment.addresses if node.on_chain else {}
    return page(request, "ledger.html", blocks=blocks, contracts=contracts, chain_id=node.chain.chain_id,
                kind=node.chain.kind)


@router.get("/web/ledger/blocks/{number}")
def block_page(request: Request, number: int):
    node = request.app.state.node
    block = node.chain.block(number)
    txs = [node.chain.transaction(h) for h in block.transactions]
    return page(request, "block.html", block=block, txs=txs, names=_names(node))


@router.get("/web/ledger/tx/{tx_hash}")
def tx_page(request: Request, tx_hash: str):
    if not TX_HASH.match(tx_hash):
        raise LedgerError(f"{tx_hash!r} is not a transaction hash (0x and 64 hex digits)", field="tx_hash")
    node = request.app.state.node
    return page(request, "tx.html", tx=node.chain.transaction(tx_hash), names=_names(node))


@router.get("/web/ledger/address/{address}")
def address_page(request: Request, address: str):
    from ledgerlm.api.chain import account

    node = request.app.state.node
    address = _address(address)
    summary = account(address, node)
    head = node.chain.block_number()
    mine, needle = [], address.lower()
    scanned = read = 0
    for n in range(head, max(-1, head - ADDRESS_SCAN_BLOCKS), -1):
        hashes = node.chain.block(n).transactions
        if read + len(hashes) > ADDRESS_SCAN_TXS and scanned:
            break  # the next block would read past the bound: the page says how far back it looked
        scanned += 1
        for h in hashes[:ADDRESS_SCAN_TXS - read]:
            read += 1
            tx = node.chain.transaction(h)
            if needle in ((tx.sender or "").lower(), (tx.to or "").lower()) or any(
                    needle in str(e.args).lower() for e in tx.result.logs):
                mine.append(tx)
        if len(mine) >= 50 or read >= ADDRESS_SCAN_TXS:
            break
    return page(request, "address.html", address=address, summary=summary, txs=mine, names=_names(node),
                scanned=scanned)
