"""The Playground: chat with any served model and see the answer's matched spans, attribution and receipt."""

from __future__ import annotations

import re

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from ledgerlm.errors import LedgerError
from ledgerlm.serving.receipts import public, receipt_datanet
from ledgerlm.web.access import page_reader
from ledgerlm.web.render import environment, page

router = APIRouter()

MIN_SPAN_WORDS = 3  # a shared run shorter than this is ordinary language, not evidence
SHOWN_SOURCES = 5
MAX_COMPARED_CHARS = 20_000  # an answer or a record longer than this is cut
WORD = re.compile(r"\S+")


def matched_spans(answer: str, sources: dict) -> list[dict]:
    """The answer cut into pieces, each marked with the contribution whose text it repeats (runs of at
    least MIN_SPAN_WORDS words, compared word by word, case and punctuation aside)."""
    answer = answer[:MAX_COMPARED_CHARS]
    words = [(m.start(), m.end(), _norm(m.group())) for m in WORD.finditer(answer)]
    ours = [w for _, _, w in words]
    owner: list = [None] * len(words)
    k = MIN_SPAN_WORDS
    # A run of k words the source holds too marks those words; overlapping runs make up longer spans. Set look-ups
    # keep it linear in both texts: an alignment (difflib) took an anonymous caller's repetitive answer tens of
    # CPU seconds per source.
    for cid, text in sources.items():
        theirs = [_norm(w) for w in WORD.findall(text[:MAX_COMPARED_CHARS])]
        runs = {tuple(theirs[i:i + k]) for i in range(len(theirs) - k + 1)}
        for i in range(len(ours) - k + 1):
            if tuple(ours[i:i + k]) in runs:
                for j in range(i, i + k):
                    owner[j] = owner[j] if owner[j] is not None else cid
    pieces, position, i = [], 0, 0
    while i < len(words):
        j = i
        while j + 1 < len(words) and owner[j + 1] == owner[i]:
            j += 1
        start, end = words[i][0], words[j][1]
        if start > position:
            pieces.append({"text": answer[position:start], "source": None})
        pieces.append({"text": answer[start:end], "source": owner[i]})
        position, i = end, j + 1
    if position < len(answer):
        pieces.append({"text": answer[position:], "source": None})
    return pieces


def _norm(word: str) -> str:
    return re.sub(r"[^\w]", "", word.lower())


def _text(payload) -> str:
    if isinstance(payload, dict):
        return " ".join(_text(v) for v in payload.values())
    if isinstance(payload, list):
        return " ".join(_text(v) for v in payload)
    return "" if payload is None else str(payload)


@router.get("/web/playground")
def playground(request: Request, model: str = ""):
    node = request.app.state.node
    try:
        models, unavailable = node.serving.models(), None
    except LedgerError as exc:  # no base model yet: the page says so instead of failing
        models, unavailable = [], exc.message
    return page(request, "playground.html", models=models, chosen=model, unavailable=unavailable)


@router.post("/web/playground/attribution")
def attribution_fragment(request: Request, receipt_id: str = Form(...), answer: str = Form("")):
    """The receipt of one answer as HTML: the answer with matched spans marked, the contributions it was
    attributed to with their shares, the fee split and the node's checks."""
    node = request.app.state.node
    try:
        log = node.serving.receipts
        receipt = log.get(receipt_id)
        checks = log.verify(receipt)
    except LedgerError as exc:
        return HTMLResponse(f'<p class="error-message">{_escape(exc.message)}</p>', status_code=exc.status)
    datanet = receipt_datanet(receipt)
    records_shown = datanet is None or node.datanets.may_read(datanet, page_reader(request, datanet))
    shown = public(receipt, records_shown=records_shown)  # a private Datanet's records: its owner and members only
    attribution = shown["attribution"] or {}
    shares = list(attribution.get("contributions") or [])
    sources = {}
    # Spans are matched against this receipt's own (public) sources only, whatever answer is posted: marking
    # only the answer it paid for told anyone with the receipt id whether a guess was the consumer's private
    # answer. At most SHOWN_SOURCES records of one receipt, MAX_COMPARED_CHARS each: no word-matching service.
    for share in shares[:SHOWN_SOURCES]:
        try:
            contribution = node.datanets.contribution(int(share["contribution_id"]))
            node.datanets.require_access(contribution.datanet, None)
        except (LedgerError, ValueError, TypeError):
            continue  # a private Datanet's text is not compared on a page anyone can open
        sources[share["contribution_id"]] = _text(contribution.payload)
    html = environment.get_template("attribution.html").render(
        receipt=shown, checks=checks, attribution=attribution, shares=shares,
        pieces=matched_spans(answer, sources), final=receipt.state == "final")
    return HTMLResponse(html)


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))
