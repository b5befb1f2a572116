"""The attribution evaluation: planted facts in tuning and test splits, baselines, LDS, false payouts and cost."""

from ledgerlm.evals.attribution.harness import EvalConfig, EvalReport, run_attribution_eval
from ledgerlm.evals.attribution.tables import report_tables

__all__ = ["EvalConfig", "EvalReport", "report_tables", "run_attribution_eval"]
