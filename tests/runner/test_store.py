"""The results store on its own: damage moved aside in one line, read-only stores that never write,
the writer's lock, the writability check and a full disk."""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest

from prune_bench.errors import UserError
from prune_bench.runner import store as store_mod
from prune_bench.runner.store import ResultStore, StoreError, StoreWarning


def _rec(item: str, config: str = "a", **extra: object) -> dict:
    return {"config_hash": config, "item_id": item, **extra}


def _line(record: dict) -> bytes:
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _sidecar(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "results.damaged.jsonl").read_text().splitlines()]


def _one_warning(record: pytest.WarningsRecorder) -> str:
    messages = [str(w.message) for w in record if issubclass(w.category, StoreWarning)]
    assert len(messages) == 1, messages
    assert "\n" not in messages[0]
    return messages[0]


def test_a_torn_last_line_is_moved_aside_in_one_line_and_the_next_record_survives(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_rec("1", x=1))
    store.close()
    with store.path.open("a") as f:
        f.write('{"config_hash": "a", "item_id": "2", "x"')  # killed mid-write
    with pytest.warns(StoreWarning) as caught:
        reopened = ResultStore(tmp_path)
    message = _one_warning(caught)
    assert str(store.path) in message and "line 2: torn last line" in message
    assert not reopened.done("a", "2") and reopened.done("a", "1")
    reopened.append(_rec("2", x=2))
    reopened.close()
    assert [r["item_id"] for r in ResultStore(tmp_path, read_only=True).records()] == ["1", "2"]
    [moved] = _sidecar(tmp_path)
    assert moved["line"] == 2 and moved["text"] == '{"config_hash": "a", "item_id": "2", "x"'


def test_manifests_of_resumed_runs_accumulate(tmp_path):
    with ResultStore(tmp_path) as store:
        store.write_manifest({"run": 1})
    with ResultStore(tmp_path) as store:
        store.write_manifest({"run": 2})
    assert [m["run"] for m in json.loads((tmp_path / "manifest.json").read_text())] == [1, 2]
    assert [m["run"] for m in ResultStore(tmp_path, read_only=True).manifests()] == [1, 2]


DAMAGED_LINES = {
    "not JSON": (b'{"config_hash": "a", "item_id": "2"\n', "not JSON"),
    "not a dict": (b'["a", "2"]\n', "not a JSON object (a list)"),
    "not UTF-8": (b'{"config_hash": "a", "item_id": "\xff\xfe"}\n', "not UTF-8"),
    "no config_hash": (b'{"item_id": "2", "correct": true}\n', "no config_hash"),
    "no item_id": (b'{"config_hash": "a"}\n', "no item_id"),
    "config_hash not a string": (b'{"config_hash": 3, "item_id": "2"}\n', "config_hash is not a string"),
    "blank": (b"\n", "empty line"),
}


@pytest.mark.parametrize("kind", DAMAGED_LINES)
def test_a_damaged_line_is_one_warning_naming_file_and_line_and_is_moved_aside(tmp_path, kind):
    raw, reason = DAMAGED_LINES[kind]
    (tmp_path / "results.jsonl").write_bytes(_line(_rec("1")) + raw + _line(_rec("3")))
    with pytest.warns(StoreWarning) as caught:
        store = ResultStore(tmp_path)
    message = _one_warning(caught)
    assert f"{tmp_path / 'results.jsonl'}: line 2: {reason}" in message
    assert "results.damaged.jsonl" in message
    assert store.done("a", "1") and store.done("a", "3") and not store.done("a", "2")
    assert (tmp_path / "results.jsonl").read_bytes() == _line(_rec("1")) + _line(_rec("3"))
    [moved] = _sidecar(tmp_path)
    assert moved["file"] == "results.jsonl" and moved["line"] == 2 and moved["reason"].startswith(reason)
    assert moved["text"] == raw.decode("utf-8", "backslashreplace")
    if kind == "not UTF-8":
        assert base64.b64decode(moved["base64"]) == raw  # the exact bytes are kept
    store.append(_rec("2"))  # the re-run computes it again
    assert [r["item_id"] for r in store.records()] == ["1", "3", "2"]


def test_many_damaged_lines_are_still_one_line_and_the_sidecar_is_appended(tmp_path):
    good = [_line(_rec(str(i))) for i in range(5)]
    bad = [b"x\n", b"[]\n", b"{}\n", b"1\n", b"\xff\n"]
    (tmp_path / "results.jsonl").write_bytes(b"".join(g + b for g, b in zip(good, bad, strict=True)))
    with pytest.warns(StoreWarning) as caught:
        ResultStore(tmp_path).close()
    message = _one_warning(caught)
    assert "line 2: not JSON" in message and "and 2 more damaged line(s)" in message
    assert (tmp_path / "results.jsonl").read_bytes() == b"".join(good)

    with (tmp_path / "results.jsonl").open("ab") as f:
        f.write(b"garbage\n")
    with pytest.warns(StoreWarning) as caught:
        ResultStore(tmp_path).close()
    assert "line 6: not JSON" in _one_warning(caught)
    assert [m["line"] for m in _sidecar(tmp_path)] == [2, 4, 6, 8, 10, 6]


def test_an_undamaged_store_warns_nothing_and_has_no_sidecar(tmp_path, recwarn):
    with ResultStore(tmp_path) as store:
        store.append(_rec("1"))
    ResultStore(tmp_path).close()
    assert not [w for w in recwarn if issubclass(w.category, StoreWarning)]
    assert not (tmp_path / "results.damaged.jsonl").exists()


def test_a_read_only_store_never_writes(tmp_path):
    missing = tmp_path / "nowhere"
    assert list(ResultStore(missing, read_only=True).records()) == []
    assert not missing.exists()  # reading creates nothing

    (tmp_path / "results.jsonl").write_bytes(_line(_rec("1")) + b"garbage\n" + _line(_rec("2")) + b'{"conf')
    (tmp_path / "manifest.json").write_text('[{"run": 1}, 7')
    before = _snapshot(tmp_path)
    reader = ResultStore(tmp_path, read_only=True)
    assert [r["item_id"] for r in reader.records()] == ["1", "2"]
    assert reader.manifests() == []
    assert [(d.file, d.line) for d in reader.damage] == [
        ("results.jsonl", 2),
        ("results.jsonl", 4),
        ("manifest.json", 1),
    ]
    summary = reader.damage_summary()
    assert "\n" not in summary and "line 2: not JSON" in summary and "torn last line" in summary
    with pytest.warns(StoreWarning) as caught:
        reader.warn_damage()
    assert "skipped" in _one_warning(caught)
    with pytest.raises(RuntimeError):
        reader.append(_rec("3"))
    with pytest.raises(RuntimeError):
        reader.write_manifest({"run": 2})
    reader.close()
    assert _snapshot(tmp_path) == before  # no repair, no lock file, no sidecar


MANIFESTS = {
    "truncated": (b'[\n  {\n    "run": 1\n  },\n  {\n    "ru', "line 6: not JSON", 0),
    "empty": (b"", "the file: empty", 0),
    "not UTF-8": (b'[{"run": "\xff"}]', "not UTF-8", 0),
    "a dict": (b'{"run": 1}', "not a list of runs (a dict)", 0),
    "a number": (b"3", "not a list of runs (a int)", 0),
    "a list with a non-object": (b'[{"run": 1}, "junk", {"run": 2}]', "entry 2 is not an object", 2),
}


@pytest.mark.parametrize("kind", MANIFESTS)
def test_a_damaged_manifest_is_one_warning_and_moved_aside_not_a_crash(tmp_path, kind):
    raw, reason, kept = MANIFESTS[kind]
    (tmp_path / "manifest.json").write_bytes(raw)
    reader = ResultStore(tmp_path, read_only=True)
    assert len(reader.manifests()) == kept
    assert reader.damage and reader.damage[0].file == "manifest.json"
    with pytest.warns(StoreWarning) as caught, ResultStore(tmp_path) as store:
        store.write_manifest({"run": "new"})
    message = _one_warning(caught)
    assert f"{tmp_path / 'manifest.json'}: " in message and reason in message
    runs = json.loads((tmp_path / "manifest.json").read_text())
    assert len(runs) == kept + 1 and runs[-1] == {"run": "new"}
    [moved] = _sidecar(tmp_path)
    assert moved["file"] == "manifest.json" and reason.split(": ")[-1] in moved["reason"]
    assert ResultStore(tmp_path, read_only=True).manifests() == runs


def test_a_second_writer_in_another_process_is_refused_but_not_in_this_one(tmp_path):
    first = ResultStore(tmp_path)
    second = ResultStore(tmp_path)  # one process is one writer: it shares its own lock
    lock = tmp_path / "results.lock"
    assert lock.read_text().strip() == str(os.getpid())
    probe = os.open(lock, os.O_RDONLY)  # another open file description: what another process sees
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        first.close()
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still held by `second`
        second.close()
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the last store
        with pytest.raises(UserError, match=r"is in use by another prune-bench run \(pid \?\)"):
            ResultStore(tmp_path)  # (the probe holds it now, and wrote no pid)
    finally:
        os.close(probe)
    ResultStore(tmp_path).close()


def test_a_shard_has_its_own_files_and_lock(tmp_path):
    whole, shard = ResultStore(tmp_path), ResultStore(tmp_path, shard="rank1")
    whole.append(_rec("1"))
    shard.append(_rec("2"))
    assert shard.path.name == "results.rank1.jsonl" and shard.lock_path.name == "results.rank1.lock"
    assert shard.damaged_path.name == "results.rank1.damaged.jsonl"
    assert [r["item_id"] for r in shard.records()] == ["2"] and not whole.done("a", "2")
    with pytest.raises(ValueError):
        ResultStore(tmp_path, shard="../x")


def test_check_writable_finds_what_would_stop_a_writer(tmp_path, monkeypatch):
    ResultStore.check_writable(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checked, not created
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError, match="is a file; pass a directory as --out"):
        ResultStore.check_writable(afile)
    with pytest.raises(UserError, match="is a file"):
        ResultStore.check_writable(afile / "sub")
    with pytest.raises(UserError, match="is a file"):
        ResultStore(afile)  # the writer itself too, before creating anything
    (tmp_path / "d" / "results.jsonl").mkdir(parents=True)
    with pytest.raises(UserError, match="is not a writable file"):
        ResultStore.check_writable(tmp_path / "d")

    real_access = os.access
    readonly = tmp_path / "ro"
    readonly.mkdir()
    # (the tests may run as root, for whom a 0o555 directory is writable: fake what a user sees)
    monkeypatch.setattr(
        store_mod.os, "access", lambda p, m: real_access(p, m) and not (m & os.W_OK and Path(p) == readonly)
    )
    with pytest.raises(UserError, match="'.*ro' is not writable; pass another --out"):
        ResultStore.check_writable(readonly)
    with pytest.raises(UserError, match="cannot create results directory .* is not writable"):
        ResultStore.check_writable(readonly / "out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_writable_refuses_a_read_only_directory(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    try:
        with pytest.raises(UserError, match="not writable"):
            ResultStore.check_writable(readonly)
    finally:
        readonly.chmod(0o755)


def _failing_write(monkeypatch, *, partial: bool):
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("results.jsonl"):
            if partial:
                real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(store_mod.os, "write", write)


@pytest.mark.parametrize("partial", [True, False], ids=["half-written", "nothing-written"])
def test_a_full_disk_is_one_line_and_leaves_no_half_record(tmp_path, monkeypatch, partial):
    store = ResultStore(tmp_path)
    store.append(_rec("1"))
    before = store.path.read_bytes()
    _failing_write(monkeypatch, partial=partial)
    with pytest.raises(StoreError) as err:  # (not a UserError: no item-failure handler may swallow it)
        store.append(_rec("2", payload="x" * 1000))
    message = str(err.value)
    assert "\n" not in message and str(store.path) in message and "No space left on device" in message
    assert not isinstance(err.value, UserError)
    assert store.path.read_bytes() == before and not store.done("a", "2")
    monkeypatch.undo()
    store.append(_rec("2"))  # space again: the run continues
    assert [r["item_id"] for r in store.records()] == ["1", "2"]


def test_a_failed_fsync_takes_the_line_back(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.append(_rec("1"))
    before = store.path.read_bytes()

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    with pytest.raises(StoreError, match="the records written before are kept"):
        store.append(_rec("2"))
    assert store.path.read_bytes() == before and not store.done("a", "2")


def test_a_full_disk_while_writing_the_manifest_is_one_line(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.write_manifest({"run": 1})
    before = (tmp_path / "manifest.json").read_bytes()

    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(StoreError, match="cannot write .*manifest.json.: No space left on device"):
        store.write_manifest({"run": 2})
    monkeypatch.undo()
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert not (tmp_path / "manifest.tmp").exists()


def test_a_store_left_open_on_a_deleted_directory_lends_no_lock_to_a_new_one(tmp_path):
    leaked = ResultStore(tmp_path / "x")
    shutil.rmtree(tmp_path / "x")  # (a temporary directory whose store was never closed)
    fresh = ResultStore(tmp_path / "x")
    leaked.close()  # closing the old one leaves the new lock alone
    probe = os.open(fresh.lock_path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    fresh.close()
