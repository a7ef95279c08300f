"""The fold child's supervisor and the stop signals of `crossings serve` (service/supervise.py),
with real child processes: restarted when it exits, stopped with SIGTERM and waited for, killed
when it will not stop, a stop during a restart pause or before anything started; signals held
as StopSignal and given back."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from service import supervise
from service.supervise import HeldSignals, StopRequest, StopSignal, Supervised


def _wait_for(check: object, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"never: {what}")
        time.sleep(0.05)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_child_that_exits_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervise, "FIRST_RESTART_S", 0.05)
    starts = tmp_path / "starts"
    code = f"open({str(starts)!r}, 'a').write('started\\n'); raise SystemExit(3)"
    child = Supervised([sys.executable, "-c", code], name="test child", stop_wait_s=5)
    child.start()
    _wait_for(lambda: _lines(starts) >= 3, "three starts")
    child.stop()
    after = _lines(starts)
    time.sleep(0.5)
    assert _lines(starts) == after  # stopped: no start after stop returned


def _started(tmp_path: Path, on_sigterm: str, *, stop_wait_s: float) -> Supervised:
    """A supervised child that sets ``on_sigterm`` as its SIGTERM handler, says it is ready and
    sleeps; returned once ready."""
    ready = tmp_path / "ready"
    code = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, {on_sigterm})\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    child = Supervised([sys.executable, "-c", code], name="test child", stop_wait_s=stop_wait_s)
    child.start()
    _wait_for(ready.exists, "the child ready")
    assert child._process is not None
    return child


def test_stop_sends_sigterm_and_waits_for_the_child(tmp_path: Path) -> None:
    done = tmp_path / "done"
    handler = f"lambda *_: (open({str(done)!r}, 'w').close(), sys.exit(0))"
    child = _started(tmp_path, handler, stop_wait_s=30)
    assert child._process is not None
    pid = child._process.pid
    child.stop()
    assert done.exists()  # its SIGTERM handler ran to the end before stop returned
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no zombie left


def test_a_child_that_ignores_sigterm_is_killed_after_the_wait(tmp_path: Path) -> None:
    child = _started(tmp_path, "signal.SIG_IGN", stop_wait_s=0.5)
    process = child._process
    child.stop()
    assert process is not None and process.returncode == -signal.SIGKILL


def test_kill_stops_at_once(tmp_path: Path) -> None:
    child = _started(tmp_path, "signal.SIG_DFL", stop_wait_s=60)
    process = child._process
    child.kill()
    assert process is not None and process.returncode == -signal.SIGKILL


def test_a_stop_during_the_restart_pause_or_before_the_start_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Supervised([sys.executable, "-c", "pass"], name="never started", stop_wait_s=1).stop()

    monkeypatch.setattr(supervise, "FIRST_RESTART_S", 3600.0)
    child = Supervised([sys.executable, "-c", "raise SystemExit(1)"], name="test child",
                       stop_wait_s=1)  # fmt: skip
    child.start()
    _wait_for(lambda: child._process is not None and child._process.poll() is not None,
              "the child's exit")  # fmt: skip
    child.stop()  # the thread is in its hour-long pause: the stop ends it
    assert not child._thread.is_alive()


def test_held_signals_raise_stop_signal_and_give_back_the_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    held = HeldSignals()
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with pytest.raises(StopSignal) as raised:
                signal.raise_signal(signum)
            assert raised.value.signum == signum
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a uvicorn worker pool leaves it
        held.arm()
        with pytest.raises(StopSignal):
            signal.raise_signal(signal.SIGTERM)
    finally:
        held.release()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    held.end_as(signal.SIGINT)  # a Ctrl-C's KeyboardInterrupt, swallowed: the command returns


def test_a_stop_request_notes_the_first_signal_and_a_parent_gone() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        stop = StopRequest()
        assert stop.wait(0.1, parent=None) is None
        assert stop.wait(0.1, parent=-1) == "the server is gone"
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        assert stop.wait(60, parent=None) == "SIGTERM"
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
