"""Background jobs as plain async functions (compaction, rollups, retention, alert evaluation),
and the two runners that schedule them: embedded asyncio tasks, or Celery."""
