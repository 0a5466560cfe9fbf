"""Post steps: what runs once a page of suggestions has been answered."""

from service.pipeline.post.impressions import RecordImpressions

__all__ = ["RecordImpressions"]
