"""Parsed pipeline documents, cached by a digest of their content.

A saved document never changes in place (a new version gets a new digest), so each process parses a
given version once, however many executions and reads of it there are.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from orchestrator.document import load_pipeline
from orchestrator.pipeline import Pipeline

CACHE_SIZE = 256


def digest(document: object) -> str:
    """The SHA-256 of a document's canonical JSON."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class DocumentCache:
    """Pipelines by document digest, least recently used first out."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._pipelines: OrderedDict[str, Pipeline] = OrderedDict()
        self._lock = Lock()

    def pipeline(self, key: str, document: Callable[[], object]) -> Pipeline:
        """The pipeline of the document with this digest; `document` fetches it when it is not cached."""
        with self._lock:
            cached = self._pipelines.get(key)
            if cached is not None:
                self._pipelines.move_to_end(key)
                return cached
        pipeline = load_pipeline(document(), targets=None)
        self.put(key, pipeline)
        return pipeline

    def put(self, key: str, pipeline: Pipeline) -> None:
        with self._lock:
            self._pipelines[key] = pipeline
            self._pipelines.move_to_end(key)
            if len(self._pipelines) > self.size:
                self._pipelines.popitem(last=False)
