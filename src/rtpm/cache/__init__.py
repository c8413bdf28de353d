"""Caches: latest value per series, query results."""
