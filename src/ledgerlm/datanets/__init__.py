"""Datanet lifecycle, parsers for uploaded formats, versions and their Merkle roots."""

from ledgerlm.datanets.export import FORMATS as EXPORT_FORMATS
from ledgerlm.datanets.ingest import IncomingFile
from ledgerlm.datanets.review import MAX_REVIEW_BATCH
from ledgerlm.datanets.schemas import (
    DOCUMENTS,
    LABEL_FIELD_ANNOTATION,
    AccessDenied,
    Contribution,
    Datanet,
    DatanetError,
    DatanetSpec,
    DatanetVersion,
    DuplicateContribution,
    FileEntry,
    ReviewBatch,
    UnknownDatanet,
    UploadReceipt,
    manifest_hash,
)
from ledgerlm.datanets.service import ChainAnchor, Datanets
from ledgerlm.datanets.upload import UploadInProgress
from ledgerlm.datanets.versions import LEAF_TYPES

__all__ = [
    "DOCUMENTS",
    "AccessDenied",
    "EXPORT_FORMATS",
    "LABEL_FIELD_ANNOTATION",
    "LEAF_TYPES",
    "MAX_REVIEW_BATCH",
    "ChainAnchor",
    "Contribution",
    "Datanet",
    "DatanetError",
    "DatanetSpec",
    "DatanetVersion",
    "Datanets",
    "DuplicateContribution",
    "FileEntry",
    "IncomingFile",
    "ReviewBatch",
    "UnknownDatanet",
    "UploadInProgress",
    "UploadReceipt",
    "manifest_hash",
]
