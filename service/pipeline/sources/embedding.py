"""Users close to the viewer in the graph-embedding space (FAISS)."""

from __future__ import annotations

from dataclasses import dataclass

from graph.ann import VectorSearch
from graph.retrieval import RetrievalConfig, embedding_neighbours
from service.pipeline.candidates import SourceResult
from service.pipeline.reasons import SuggestionReason


@dataclass(frozen=True)
class EmbeddingNeighbours:
    search: VectorSearch
    k: int = RetrievalConfig.embedding_k
    name: str = "embedding"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, scores = embedding_neighbours(self.search, viewer_row, self.k)
        return SourceResult(self.name, SuggestionReason.SIMILAR_NETWORK, rows, scores)
