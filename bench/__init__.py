"""Benchmarks that compare Rollway with raw Celery measured in the same run (`python -m bench ...`)."""
