"""The HTTP server (needs the ``serve`` extra): web form and JSON API."""
