"""Authentication and authorisation without HTTP: passwords, tokens, API keys, scopes, rate limits.

`api/auth.py` turns requests into calls on `AuthService` and `RateLimiter`; nothing here knows HTTP.
"""
