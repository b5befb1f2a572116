"""Datanet lifecycle, parsers for uploaded formats, versions and their Merkle roots.

Each name loads its module on first use, so a client that only reads Datanet schemas never imports the
database or the parsers.
"""

from ledgerlm.lazy import lazy_names

_LAZY = {
    "EXPORT_FORMATS": ("export", "FORMATS"),
    "IncomingFile": ("ingest", "IncomingFile"),
    **{name: ("schemas", name) for name in (
        "DOCUMENTS", "LABEL_FIELD_ANNOTATION", "MAX_CONTRIBUTIONS_PAGE", "MAX_PAYLOAD_PAGE", "MAX_REVIEW_BATCH",
        "NEXT_OFFSET_HEADER", "PAGE_PAYLOAD_BYTES", "AccessDenied", "Contribution", "ContributionPage", "Datanet",
        "DatanetError",
        "DatanetSpec", "DatanetVersion", "DuplicateContribution", "FileEntry", "ReviewBatch", "UnknownDatanet",
        "UploadReceipt", "manifest_hash")},
    "ChainAnchor": ("service", "ChainAnchor"), "Datanets": ("service", "Datanets"),
    "UploadInProgress": ("upload", "UploadInProgress"),
    "LEAF_TYPES": ("versions", "LEAF_TYPES"),
}

__all__ = sorted(_LAZY)  # noqa: PLE0605 - the names resolve through __getattr__

__getattr__ = lazy_names(__name__, _LAZY)
