"""The pytest sessions the tooling starts itself load only the plugins they need.

A grading judge and a sweep are pytest sessions that this package starts and controls. Other
plugins installed beside pytest (hypothesis, pytest-benchmark, anyio, ...) would each cost every
such session its import time (about 2 s for those three) and could change how checks run, and a
grade must not depend on what else the grader's environment holds. So these sessions start with
plugin autoloading off, without the caller's ``PYTEST_ADDOPTS``/``PYTEST_PLUGINS``, and name the
two plugins they use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

PLUGIN_ARGS = ("-p", "pytest_timeout", "-p", "infralens.plugin")
_CALLER_SETTINGS = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")


def own_session_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with plugin autoloading off and the caller's pytest settings removed."""
    env = {name: value for name, value in base.items() if name not in _CALLER_SETTINGS}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


@contextmanager
def own_session() -> Iterator[None]:
    """For an in-process ``pytest.main(..., *PLUGIN_ARGS)``: :func:`own_session_env` applied to
    ``os.environ`` for the duration, then restored."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(own_session_env(saved))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
