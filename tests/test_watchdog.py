"""pytest-timeout's per-check limit in a kata checkout: one watchdog thread, not a thread per check (infralens.watchdog)."""

from __future__ import annotations

import pytest

from conftest import write

# Run in this order: twenty checks note the threads beside them, one reads the notes, one holds a far
# deadline until the watchdog sleeps until it, and the last sleeps past a much shorter limit.
CHECKS = '''
import threading
import time

import pytest

SEEN = []


@pytest.mark.parametrize("index", range(20))
def test_notes_the_threads_beside_it(index):
    SEEN.append({(thread.name, thread.ident) for thread in threading.enumerate() if thread is not threading.main_thread()})


def test_one_watchdog_thread_timed_them_all():
    threads = set().union(*SEEN)
    assert not [name for name, _ in threads if name.startswith("pytest_timeout")], threads
    assert len({ident for name, ident in threads if name == "infralens-watchdog"}) == 1, threads


def test_holds_a_far_deadline_until_the_watchdog_sleeps_until_it(pytestconfig):
    watchdog = pytestconfig.pluginmanager.get_plugin("infralens-watchdog")
    give_up = time.monotonic() + 30
    while watchdog._wakes_at is None and time.monotonic() < give_up:
        time.sleep(0.01)
    assert watchdog._wakes_at is not None


@pytest.mark.timeout(1)
def test_sleeps_past_a_shorter_limit():
    time.sleep(120)
'''


@pytest.mark.waits  # the last check's 1 s limit
def test_one_thread_times_every_check_and_a_shorter_limit_wakes_it(kata_repo, pytester, monkeypatch):
    write(kata_repo / "other" / "test_timed.py", CHECKS)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    # The project's timer method; the 600 s limit is far over the run, the last check's 1 s far under it.
    result = pytester.runpytest_subprocess(
        "-p", "infralens.plugin", "-p", "pytest_timeout", "-o", "timeout_method=thread", "--timeout=600", "-v", "other/test_timed.py", timeout=60,
    )
    out = result.stdout.str() + result.stderr.str()
    for check in ("test_one_watchdog_thread_timed_them_all", "test_holds_a_far_deadline_until_the_watchdog_sleeps_until_it"):
        assert f"{check} PASSED" in out, out[-3000:]
    assert result.ret == 1, out[-3000:]
    assert "Timeout" in out and "test_sleeps_past_a_shorter_limit" in out and "time.sleep(120)" in out, out[-3000:]
