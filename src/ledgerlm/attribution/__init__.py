"""Proof of Attribution: which contributions shaped an answer, from gradient influence and span matching."""

from ledgerlm.attribution.attribute import (
    AttributionResult,
    AttributionSettings,
    Attributor,
    ContributionShare,
    ContributorShare,
    ExampleAttribution,
    attribute,
    load_attributor,
    roll_up,
    split_bps,
)
from ledgerlm.attribution.calibration import Calibration, CalibrationSettings, calibrate
from ledgerlm.attribution.collect import TrainingFeatures
from ledgerlm.attribution.errors import AttributionError, IndexNotFoundError
from ledgerlm.attribution.features import LoraProjector, template_head
from ledgerlm.attribution.index import (
    SCORE_MODES,
    AttributionIndex,
    IndexConfig,
    IndexedExample,
    build_index,
)
from ledgerlm.attribution.spans import SpanIndex

__all__ = [
    "SCORE_MODES",
    "AttributionError",
    "AttributionIndex",
    "AttributionResult",
    "AttributionSettings",
    "Attributor",
    "Calibration",
    "CalibrationSettings",
    "ContributionShare",
    "ContributorShare",
    "ExampleAttribution",
    "IndexConfig",
    "IndexNotFoundError",
    "IndexedExample",
    "LoraProjector",
    "SpanIndex",
    "TrainingFeatures",
    "attribute",
    "build_index",
    "calibrate",
    "load_attributor",
    "roll_up",
    "split_bps",
    "template_head",
]
