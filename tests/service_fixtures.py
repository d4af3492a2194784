"""Service fixtures (filled in by the queue work)."""
