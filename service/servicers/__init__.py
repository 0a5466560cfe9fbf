"""The gRPC servicers: translate requests to the pipeline and the store,
and domain errors to status codes. Nothing else lives here."""

from service.servicers.graph import GraphServicer
from service.servicers.suggestion import SuggestionServicer

__all__ = ["GraphServicer", "SuggestionServicer"]
