"""The HTTP/1.1 and WebSocket shell on Trio."""
