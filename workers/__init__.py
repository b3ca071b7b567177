"""Celery: the app and its queues, thin tasks, one executor per task type, and the Celery dispatcher."""
