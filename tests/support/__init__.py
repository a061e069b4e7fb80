"""Helpers shared by the integration and acceptance tests (publishing, running, reading)."""
