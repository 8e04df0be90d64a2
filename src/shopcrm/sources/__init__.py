"""Data sources: the embedded DuckDB store, your own database over DB-API, and Spark."""

from shopcrm.sources._base import MemorySegmentStore, SavedSegment, SegmentStore, Source, column_type

__all__ = ["MemorySegmentStore", "SavedSegment", "SegmentStore", "Source", "column_type"]
