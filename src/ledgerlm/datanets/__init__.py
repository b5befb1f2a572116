"""Datanet lifecycle, parsers for uploaded formats, versions and their Merkle roots.

Each name loads its module on first use, so a client that only reads Datanet schemas never imports the
database or the parsers.
"""

from importlib import import_module

_LAZY = {
    "EXPORT_FORMATS": ("export", "FORMATS"),
    "IncomingFile": ("ingest", "IncomingFile"),
    **{name: ("schemas", name) for name in (
        "DOCUMENTS", "LABEL_FIELD_ANNOTATION", "MAX_REVIEW_BATCH", "AccessDenied", "Contribution", "Datanet", "DatanetError",
        "DatanetSpec", "DatanetVersion", "DuplicateContribution", "FileEntry", "ReviewBatch", "UnknownDatanet",
        "UploadReceipt", "manifest_hash")},
    "ChainAnchor": ("service", "ChainAnchor"), "Datanets": ("service", "Datanets"),
    "UploadInProgress": ("upload", "UploadInProgress"),
    "LEAF_TYPES": ("versions", "LEAF_TYPES"),
}

__all__ = sorted(_LAZY)  # noqa: PLE0605 - the names resolve through __getattr__


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'ledgerlm.datanets' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(import_module(f"ledgerlm.datanets.{module}"), attribute)
    globals()[name] = value
    return value
