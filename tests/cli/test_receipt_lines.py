"""`receipts show` says in words what a receipt's attribution paid: evidence to contributors, the rest to the pool."""

from ledgerlm.cli.serving import _attribution_line


def test_the_attribution_of_a_receipt_is_told_in_words():
    paid = {"state": "final", "attribution": {"evidence_bps": 6000, "contributor_bps": {"0xB": 1000, "0xA": 5000}}}
    assert _attribution_line(paid) == ("attribution: evidence covers 6000 of the contributor share's 10000 bps "
                                       "(0xA 5000 bps, 0xB 1000 bps); 4000 bps to the Datanet's data pool")
    nobody = {"state": "final", "attribution": {"evidence_bps": 0, "contributor_bps": {}, "unattributed": True}}
    assert "covers 0 of" in _attribution_line(nobody) and "10000 bps to the Datanet's data pool" in \
        _attribution_line(nobody)
    assert "still running" in _attribution_line({"state": "attributing", "attribution": None})
    assert "withheld" in _attribution_line({"state": "final", "attribution": {"evidence_bps": 0, "withheld": ["x"]}})
