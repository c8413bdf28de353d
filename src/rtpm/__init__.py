"""RTPM: a self-hosted real-time performance monitoring service."""

__version__ = "0.1.0"
