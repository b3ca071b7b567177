"""A batch of pipeline documents: the order it is applied in, its validation as a whole, and the store saving it all
or none (on SQLite and on PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import batch
from orchestrator.document import load_pipeline
from orchestrator.errors import BadRequest, Conflict, PipelineInvalid
from orchestrator.store import Store

Doc = dict[str, Any]


def doc(name: str, rollback: str | None = None, **fields: Any) -> Doc:
    stage: Doc = {"taskOrder": ["Gate"], "tasks": {"Gate": {"type": "Condition", "input": {"condition": "1 == 1"}}}}
    if rollback:
        stage["rollback"] = {"pipeline": rollback}
    return {"name": name, "project": "shop", "stageOrder": ["Check"], "stages": {"Check": stage}} | fields


def lookups(store: Store) -> batch.Lookups:
    return batch.Lookups(store.find_pipeline, store.rollback_target, store.endpoint_exists)


def planned(store: Store, *documents: Doc) -> list[batch.Planned]:
    return batch.plan(list(documents), ["shop"] * len(documents), lookups(store))


def test_a_rollback_pipeline_later_in_the_batch_is_read_first(store: Store) -> None:
    # Given a batch: a release naming a rollback that comes after it, an unrelated pipeline, then the rollback
    documents = [doc("Release", rollback="Undo"), doc("Other"), doc("Undo")]

    # When it is planned
    result = planned(store, *documents)

    # Then the rollback comes before the release naming it, the rest keeps the file's order, and all are new
    assert [(item.pipeline.name, item.position) for item in result] == [("Other", 1), ("Undo", 2), ("Release", 0)]
    assert {item.action for item in result} == {batch.Action.CREATED}


def test_pipelines_naming_each_other_in_a_circle_are_refused(store: Store) -> None:
    # Given two pipelines of a batch, each the other's rollback
    # When it is planned, Then it is refused naming both
    with pytest.raises(BadRequest, match="pipelines 'A', 'B' name each other as rollbacks in a circle"):
        planned(store, doc("A", rollback="B"), doc("B", rollback="A"))


def test_every_problem_of_every_document_is_reported_with_its_place(store: Store) -> None:
    # Given a batch of a valid pipeline, one linking to a rollback that exists nowhere, a broken one, and a repeat
    documents = [doc("Fine"), doc("Linked", rollback="Nowhere"), doc("Broken", stageOrder=["Ghost"]), doc("Fine")]

    # When it is planned
    with pytest.raises(PipelineInvalid) as raised:
        planned(store, *documents)

    # Then one line names the documents with problems, and each problem is given with its document's place
    assert raised.value.message == "documents 2 (Linked), 3 (Broken) of 4 have 4 problems; nothing was applied"
    paths = sorted(problem.path for problem in raised.value.details)
    assert "documents[1].stages.Check.rollback.pipeline" in paths
    assert "documents[3].name" in paths
    assert any(path.startswith("documents[2].stageOrder") for path in paths)


def test_a_document_without_enabled_keeps_the_saved_pipelines(store: Store) -> None:
    # Given an enabled pipeline and a disabled one
    store.add_pipeline(load_pipeline(doc("On", enabled=True), None))
    store.add_pipeline(load_pipeline(doc("Off"), None))

    # When a batch names both without `enabled`, and On again with a change and `enabled: false`
    same = planned(store, doc("On"), doc("Off"))
    changed = planned(store, doc("On", description="new", enabled=False))

    # Then each keeps its own, so nothing changes; a document that says `enabled` is followed
    assert [(item.pipeline.name, item.pipeline.enabled, item.action) for item in same] == [
        ("On", True, batch.Action.UNCHANGED),
        ("Off", False, batch.Action.UNCHANGED),
    ]
    assert [(item.pipeline.enabled, item.action) for item in changed] == [(False, batch.Action.UPDATED)]


def test_the_store_saves_a_batch_all_or_none(store: Store) -> None:
    # Given a saved pipeline, and a batch replacing it and creating two new ones, the second of a name taken
    # meanwhile (by someone saving between the batch's validation and its saving)
    saved = store.add_pipeline(load_pipeline(doc("Saved", description="before"), None))
    result = planned(store, doc("Saved", description="after"), doc("New"), doc("Taken"))
    store.add_pipeline(load_pipeline(doc("Taken", description="theirs"), None))
    changes = [(None if item.existing is None else item.existing.id, item.pipeline) for item in result]

    # When the store saves the batch
    with pytest.raises(Conflict, match="nothing was applied"):
        store.apply_pipelines(changes)

    # Then none of it was saved: the replacement is undone with the first new pipeline
    assert sorted(record.name for record in store.list_pipelines("shop")) == ["Saved", "Taken"]
    assert store.get_pipeline(saved.id).pipeline.description == "before"

    # When the batch is saved without the taken name
    records = store.apply_pipelines(changes[:2])

    # Then both are saved, the replacement under the same id
    assert [record.name for record in records] == ["Saved", "New"]
    assert records[0].id == saved.id and records[0].pipeline.description == "after"
