"""Plain-SQL migrations and the reference schema, shipped as package data (see migrations.py)."""
