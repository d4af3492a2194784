"""ML and data work as plain functions: model loading, generation, scoring. Knows nothing of Celery."""
