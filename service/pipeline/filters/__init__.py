"""Safety filters: every rule named, with a reason code, vectorised over a
batch of candidates, failing closed."""

from .safety import RULES, Rule, SafetyVerdict, Viewer, apply_rules, viewer_ineligibility

__all__ = ["RULES", "Rule", "SafetyVerdict", "Viewer", "apply_rules", "viewer_ineligibility"]
