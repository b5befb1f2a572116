"""Real clean text already on the machine: Python's standard-library docstrings and installed packages' READMEs.

Neither was written for ledgerlm and the gates were never tuned on the reporting splits. The
standard library is split by module name: `stdlib_tuning` may be looked at while choosing
thresholds, `stdlib_reporting` only when reporting. Package READMEs (the long description in each
installed distribution's METADATA) are a second, independent reporting source.

Each record is either classification (`text`, `label` = its module or package) or Q&A
(`question` naming the function or the README section, `answer` = the text).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import re
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from importlib import metadata

# modules with side effects on import (a browser, a window, printed text) or none of their own docs
_SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__hello__", "__phello__",
         "test", "lib2to3", "pydoc_data", "ensurepip", "venv", "msilib", "winreg", "winsound", "_msi",
         "nturl2path", "encodings", "xxlimited", "xxsubtype", "sre_compile", "sre_parse", "sre_constants"}


def _split_of(name: str) -> str:
    """A fixed split by module: the same module is always on the same side."""
    return "tuning" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "reporting"


def _docstrings(module) -> list[tuple[str, str]]:
    """(qualified name, docstring) of a module's public functions, classes and methods."""
    out = []
    seen = set()
    for name, obj in sorted(vars(module).items()):
        # C accelerators live in `_module` (hashlib's constructors come from `_hashlib`)
        if name.startswith("_") or getattr(obj, "__module__", None) not in (module.__name__, "_" + module.__name__):
            continue
        targets = [(f"{module.__name__}.{name}", obj)]
        if inspect.isclass(obj):
            targets += [(f"{module.__name__}.{name}.{m}", getattr(v, "__func__", v)) for m, v in sorted(vars(obj).items())
                        if not m.startswith("_")]
        for qual, target in targets:
            doc = inspect.getdoc(target) if callable(target) or inspect.isclass(target) else None
            if not doc or len(doc) < 60 or doc in seen:
                continue
            seen.add(doc)
            out.append((qual, doc.strip()))
    return out


def stdlib_records(split: str, per_module: int = 60, min_docs: int = 12) -> list[dict]:
    """Docstrings of standard-library modules on one side of the split, as classification and Q&A records."""
    records = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP or _split_of(name) != split:
            continue
        try:
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module this platform lacks is simply not part of the corpus
            continue
        docs = _docstrings(module)[:per_module]
        if len(docs) < min_docs:
            continue
        for i, (qual, doc) in enumerate(docs):
            if i % 2 == 0:
                records.append({"text": doc, "label": name})
            else:
                records.append({"question": f"What does {qual} do?", "answer": doc})
    return records


_HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*$|^(.+)\n[=\-~^]{3,}$", re.MULTILINE)
_MARKUP = re.compile(r"!\[[^\]]*\]\([^)]*\)|\[([^\]]+)\]\([^)]*\)|<[^>]+>|`{1,2}|\*{1,2}|:[a-z]+:")


def _paragraphs(body: str) -> list[tuple[str, str]]:
    """(section heading, prose paragraph) pairs of a README; code, tables, lists and badges are skipped."""
    out = []
    heading = "overview"
    in_code = False
    for block in re.split(r"\n\s*\n", body):
        stripped = block.strip()
        if stripped.startswith(("```", "~~~")):
            in_code = not in_code if stripped.count("```") % 2 == 1 or stripped.count("~~~") % 2 == 1 else in_code
            continue
        if in_code:
            continue
        m = _HEADING.match(stripped)
        if m and len(stripped.splitlines()) <= 2:
            heading = (m.group(2) or m.group(3) or heading).strip().strip("#").strip()
            continue
        lines = stripped.splitlines()
        if any(line.startswith(("    ", "\t", "|", "- ", "* ", ">>>", "$ ", "..", "+", "=")) for line in lines):
            continue
        text = _MARKUP.sub(lambda mm: mm.group(1) or "", " ".join(line.strip() for line in lines))
        if len(text) >= 120 and sum(ch.isalpha() for ch in text) > 0.7 * len(text):
            out.append((heading, text))
    return out


def readme_records(per_package: int = 40, min_paragraphs: int = 8) -> list[dict]:
    """Prose paragraphs of installed packages' READMEs, as classification and Q&A records."""
    records = []
    seen = set()
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if not name or name in seen:
            continue
        seen.add(name)
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        paragraphs = _paragraphs(body)[:per_package]
        if len(paragraphs) < min_paragraphs:
            continue
        for i, (heading, text) in enumerate(paragraphs):
            if i % 2 == 0:
                records.append({"text": text, "label": name})
            else:
                records.append({"question": f"What does the {name} documentation say under {heading!r}?",
                                "answer": text})
    return records
