"""The domain of Rollway: pipelines, executions, statuses, bindings, planning, rollback and the store.

Nothing here imports Celery, Flask or the Kubernetes client.
"""
