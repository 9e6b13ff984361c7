"""One thread per process that watches each check's time limit, in place of a thread per check.

pytest-timeout is the per-check backstop (``timeout`` in ``pyproject.toml``, ``--timeout`` for the
judges). Its ``thread`` method, the one this project uses because the call limit owns ``SIGALRM``
(see :mod:`infralens.calls`), starts a timer thread for every check and joins it afterwards: about
a millisecond of CPU per check, more than most checks take, and over a second of a learner's run
of a thousand checks. pytest-timeout lets a plugin supply the timer instead
(``pytest_timeout_set_timer`` and ``pytest_timeout_cancel_timer``); :class:`Watchdog` does, with
one daemon thread that sleeps until the running check's deadline.

Arming a check only records its deadline. The thread is woken early only when that deadline comes
before the one it sleeps until (the first check, or one with a shorter limit than the last);
otherwise it wakes at the old deadline, finds the newer one and sleeps again. A check costs a lock,
not a thread. Past a deadline the thread does what pytest-timeout's own timer thread does (its
``timeout_timer``: dump every thread's stack and end the process, unless a debugger is attached).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

import pytest


class Watchdog:
    """A pytest plugin serving pytest-timeout's timer hooks for its ``thread`` method.

    ``expire(item, settings)`` runs on the watchdog's thread when ``item`` passes its deadline.
    Checks under the ``signal`` method are left to pytest-timeout.
    """

    def __init__(self, expire: Callable[[pytest.Item, Any], None]):
        self._expire = expire
        self._stopped = False
        self._start_afresh()

    def _start_afresh(self) -> None:
        """No thread yet, nothing armed. Also the state of a forked child: it inherits the lock but not the thread."""
        self._pid = os.getpid()
        self._condition = threading.Condition()
        self._armed: tuple[float, pytest.Item, Any] | None = None  # (deadline, check, its pytest-timeout settings)
        self._wakes_at: float | None = None  # the deadline the thread sleeps until; None: until woken
        self._thread: threading.Thread | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        if settings.method != "thread":
            return None
        if self._pid != os.getpid():
            self._start_afresh()
        deadline = time.monotonic() + settings.timeout
        with self._condition:
            self._armed = (deadline, item, settings)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="infralens-watchdog", daemon=True)
                self._thread.start()
            elif self._wakes_at is None or deadline < self._wakes_at:
                self._condition.notify()
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        if self._pid != os.getpid():
            return None
        with self._condition:
            if self._armed is None or self._armed[1] is not item:
                return None  # not armed here: pytest-timeout's own timer, if any, is cancelled by pytest-timeout
            self._armed = None
        return True

    def pytest_unconfigure(self) -> None:
        """The session is over (a nested one, too): the thread ends."""
        if self._pid != os.getpid():
            return
        with self._condition:
            self._stopped = True
            self._condition.notify()

    def _watch(self) -> None:
        while True:
            with self._condition:
                expired = self._wait_for_a_deadline()
            if expired is None:
                return
            _deadline, item, settings = expired
            self._expire(item, settings)  # ends the process, unless a debugger is attached

    def _wait_for_a_deadline(self) -> tuple[float, pytest.Item, Any] | None:
        """Sleep (holding the condition) until the armed check passes its deadline, and return it; None once stopped."""
        while not self._stopped:
            armed, now = self._armed, time.monotonic()
            if armed is not None and armed[0] <= now:
                self._armed = None
                return armed
            self._wakes_at = armed[0] if armed is not None else None
            self._condition.wait(None if armed is None else armed[0] - now)
        return None


def install(config: pytest.Config) -> None:
    """Register a :class:`Watchdog` where pytest-timeout is loaded and offers its timer's expiry."""
    timeout_plugin = sys.modules.get("pytest_timeout")
    expire = getattr(timeout_plugin, "timeout_timer", None)
    if expire is not None and config.pluginmanager.is_registered(timeout_plugin):
        config.pluginmanager.register(Watchdog(expire), "infralens-watchdog")
