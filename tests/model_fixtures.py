"""Model fixtures (filled in by the jobs work)."""
