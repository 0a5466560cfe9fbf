"""Safety filters as the pipeline sees them: the rules live in
``service.safety.engine`` (one implementation for suggestions and the send
path); this step runs them over the candidates."""

from service.safety.engine import SEND_RULES, SUGGESTION_RULES, Rule, SafetyEngine, SafetyVerdict, Viewer, member

__all__ = ["SEND_RULES", "SUGGESTION_RULES", "Rule", "SafetyEngine", "SafetyVerdict", "Viewer", "member"]
