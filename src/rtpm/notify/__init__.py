"""Outbound delivery of alert notifications: a dispatcher with one bounded queue per receiver,
retries with backoff, and the receivers (webhook in Alertmanager's v4 format, Alertmanager's API)."""
