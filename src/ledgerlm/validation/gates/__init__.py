"""Automatic gates that turn a batch of pending contributions into named findings and a decision each.

One module per gate (duplicates, junk, personal data, injection, label noise, question–answer
consistency); `pipeline.run_gates` runs the enabled ones in order.
"""

from ledgerlm.validation.gates.candidate import (
    Candidate,
    Finding,
    GateReport,
    decide,
    label_field,
)
from ledgerlm.validation.gates.duplicates import substantive_difference
from ledgerlm.validation.gates.injection import injection_findings
from ledgerlm.validation.gates.junk import junk_findings
from ledgerlm.validation.gates.label_noise import knn_label_disagreement
from ledgerlm.validation.gates.personal_data import iban_valid, luhn_valid, personal_data_findings
from ledgerlm.validation.gates.pipeline import run_gates

__all__ = [
    "Candidate", "Finding", "GateReport", "decide", "iban_valid", "injection_findings", "junk_findings",
    "knn_label_disagreement", "label_field", "luhn_valid", "personal_data_findings", "run_gates",
    "substantive_difference",
]
