"""Rollway's schema revisions, oldest first: each file is one Alembic revision, written by hand."""
