"""Storage: one narrow async Protocol (`base.py`) and one implementation per backend."""
