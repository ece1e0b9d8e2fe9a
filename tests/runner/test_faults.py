"""Faults around a results store, through the command line on the shipped model: a second writer,
read-only commands on a damaged store, an unwritable --out, a full disk mid-run and SIGTERM."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from prune_bench.cli import evaluation
from prune_bench.cli import main as main_mod
from prune_bench.errors import UserError
from prune_bench.runner import store as store_mod
from prune_bench.runner.store import ResultStore

FAST = ["--keep", "0.3", "--frames", "4", "--device", "cpu", "--no-progress"]


def _compare(out: Path, limit: int, *strategies: str) -> list[str]:
    return ["compare", *(strategies or ("fastv",)), *FAST, "--limit", str(limit), "--out", str(out)]


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``prune-bench ARGS`` through ``main`` (one-line errors, exit codes): (exit code, stderr)."""
    try:
        main_mod.main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _keys(out: Path) -> list[tuple[str, str]]:
    return [(r["config_hash"], r["item_id"]) for r in ResultStore(out, read_only=True).records()]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(evaluation, "load_adapter", refuse)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished store: fastv and the reference on 3 items of the shipped model."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = CliRunner().invoke(main_mod.cli, _compare(out, 3))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another process holding the write lock of a store (until it is killed)."""
    out = tmp_path / "held"
    code = textwrap.dedent(
        f"""
        import time
        from prune_bench.runner.store import ResultStore
        store = ResultStore({str(out)!r})
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield out, proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_a_second_writer_is_one_line_naming_the_first_and_the_lock_dies_with_it(holder):
    out, proc = holder
    expected = (
        f"{out} is in use by another prune-bench run (pid {proc.pid}); wait for it or pass another --out"
    )
    with pytest.raises(UserError) as err:
        ResultStore(out)
    assert str(err.value) == expected
    with pytest.raises(UserError, match="in use by another prune-bench run"):
        ResultStore.check_writable(out)
    assert list(ResultStore(out, read_only=True).records()) == []  # readers are not locked out
    proc.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock
    proc.wait()
    ResultStore(out).close()


def test_a_second_compare_on_one_out_stops_before_loading_the_model(holder):
    out, proc = holder
    cmd = [sys.executable, "-m", "prune_bench", *_compare(out, 2)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {out} is in use by another prune-bench run (pid {proc.pid}); wait for it or pass another --out"
    )
    assert "model:" not in done.stdout  # refused before the model loaded
    assert not (out / "results.jsonl").exists()


@pytest.mark.filterwarnings("always::prune_bench.runner.store.StoreWarning")  # main prints it
@pytest.mark.parametrize("command", ["table", "report", "plot"])
def test_read_only_commands_leave_a_damaged_store_byte_for_byte_alone(finished, tmp_path, capsys, command):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    lines.insert(2, b"not json at all\n")
    (out / "results.jsonl").write_bytes(b"".join(lines) + b'{"config_hash": "torn", "ite')
    before = _snapshot(out)
    args = {"table": [], "report": [], "plot": ["--out", str(tmp_path / "figs"), "--no-pdf"]}[command]
    code, err = _main([command, str(out), *args], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert f"{out / 'results.jsonl'}: line 3: not JSON" in warnings[0] and "torn last line" in warnings[0]
    assert _snapshot(out) == before  # the torn tail is not truncated, nothing is moved, no lock file


def test_an_out_that_cannot_be_written_fails_before_the_model_loads(tmp_path, capsys, no_model, monkeypatch):
    afile = tmp_path / "out"
    afile.write_text("not a directory")
    code, err = _main(_compare(afile, 1), capsys)  # (click's own check of --out)
    assert code == 2 and "is a file" in err
    code, err = _main(_compare(afile / "below", 1), capsys)
    assert code == 2
    assert err.strip() == f"error: cannot create results directory '{afile / 'below'}': '{afile}' is a file"
    real_access = os.access
    readonly = tmp_path / "ro"
    readonly.mkdir()
    monkeypatch.setattr(
        store_mod.os, "access", lambda p, m: real_access(p, m) and not (m & os.W_OK and Path(p) == readonly)
    )
    code, err = _main(_compare(readonly, 1), capsys)
    assert (
        code == 2
        and err.strip() == f"error: results directory '{readonly}' is not writable; pass another --out"
    )


def test_a_full_disk_mid_run_is_one_line_and_the_re_run_loses_nothing(
    finished, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    real_write = os.write
    appended: list[int] = []

    def write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("results.jsonl"):
            appended.append(len(data))
            if len(appended) == 4:  # the disk fills while the 4th record is written
                real_write(fd, data[:10])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(store_mod.os, "write", write)
    code, err = _main(_compare(out, 3), capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: cannot write to '{out / 'results.jsonl'}': No space left on device; the records written "
        "before are kept (free space, then run the same command again to continue)"
    ]
    raw = (out / "results.jsonl").read_bytes()
    assert raw.endswith(b"\n") and len(raw.splitlines()) == 3  # three whole records, no fragment
    first = raw.splitlines()
    monkeypatch.undo()
    code, err = _main(_compare(out, 3), capsys)
    assert code == 0, err
    after = (out / "results.jsonl").read_bytes().splitlines()
    assert after[:3] == first and len(after) == len(set(_keys(out))) == 6


@pytest.mark.slow
def test_sigterm_ends_a_run_like_ctrl_c_and_the_re_run_recomputes_nothing(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prune_bench", *_compare(out, 20)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and results.read_bytes().count(b"\n") >= 4:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be stopped; raise --limit")
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "terminated"
    raw = results.read_bytes()
    assert raw.endswith(b"\n")  # no torn line
    before = [json.loads(line) for line in raw.splitlines()]
    assert 4 <= len(before) < 2 * 20

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr  # nothing to repair
    after = [json.loads(line) for line in results.read_bytes().splitlines()]
    keys = [(r["config_hash"], r["item_id"]) for r in after]
    assert len(keys) == len(set(keys)) == 2 * 20, "an item was computed twice or is missing"
    assert after[: len(before)] == before, "finished records were rewritten"
