"""The application layer: scan, inspect, reports, the HTTP server, record writers, releases."""
