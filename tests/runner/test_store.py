from __future__ import annotations

from prune_bench.runner.store import ResultStore


def test_a_torn_last_line_is_dropped_and_the_next_record_survives(tmp_path):
    store = ResultStore(tmp_path)
    store.append({"config_hash": "a", "item_id": "1", "x": 1})
    with store.path.open("a") as f:
        f.write('{"config_hash": "a", "item_id": "2", "x"')  # killed mid-write
    reopened = ResultStore(tmp_path)
    assert not reopened.done("a", "2") and reopened.done("a", "1")
    reopened.append({"config_hash": "a", "item_id": "2", "x": 2})
    assert [r["item_id"] for r in ResultStore(tmp_path).records()] == ["1", "2"]


def test_manifests_of_resumed_runs_accumulate(tmp_path):
    ResultStore(tmp_path).write_manifest({"run": 1})
    ResultStore(tmp_path).write_manifest({"run": 2})
    import json

    assert [m["run"] for m in json.loads((tmp_path / "manifest.json").read_text())] == [1, 2]
