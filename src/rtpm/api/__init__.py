"""The HTTP/WebSocket edge. Parses requests, calls services, shapes responses; no SQL, no Redis."""
