"""Dashboard forms never put what they hold into a URL, where server logs and browser history keep it."""

import re
from pathlib import Path

import ledgerlm.web

TEMPLATES = Path(ledgerlm.web.__file__).parent / "templates"


def test_every_form_that_scripts_submit_posts_if_submitted_without_them():
    # The close-epoch form holds the operator credential and the chat form a prompt: submitted before the page's
    # script attached (or with scripts off), a form without a method is a GET with its fields in the query string.
    forms = [(path.name, tag) for path in sorted(TEMPLATES.glob("*.html"))
             for tag in re.findall(r"<form\b[^>]*>", path.read_text())]
    assert forms
    for name, tag in forms:
        method = re.search(r'method="(\w+)"', tag)
        assert method, f"{name}: {tag}"
        if method.group(1) == "get":  # searches: their one field is meant for the URL
            assert 'action="/web/' in tag, f"{name}: {tag}"
        else:
            assert method.group(1) == "post", f"{name}: {tag}"
