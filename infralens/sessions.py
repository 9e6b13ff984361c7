"""The pytest sessions the tooling starts itself load only the plugins they need.

A grading judge and a sweep are pytest sessions that this package starts and controls. Other
plugins installed beside pytest (hypothesis, pytest-benchmark, anyio, ...) would each cost every
such session its import time (about 2 s for those three) and could change how checks run, and a
grade must not depend on what else the grader's environment holds. So these sessions start with
plugin autoloading off, without the caller's ``PYTEST_ADDOPTS``/``PYTEST_PLUGINS``, and name the
two plugins they use.

Naming a plugin with ``-p`` has pytest look for an entry point of that name in every installed
distribution's metadata (about 6 ms per ``-p`` on a machine with 120 distributions) unless a plugin
of that name is already registered. A session started in a process that has already imported its
plugins (a judge forked from its forkserver, a sweep) hands them to ``pytest.main`` as plugin
objects instead (:func:`imported_plugins`): pytest registers each under its module name, as ``-p``
would, and skips the search.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType

PLUGIN_ARGS = ("-p", "pytest_timeout", "-p", "infralens.plugin")
_CALLER_SETTINGS = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")


def own_session_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with plugin autoloading off and the caller's pytest settings removed."""
    env = {name: value for name, value in base.items() if name not in _CALLER_SETTINGS}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def imported_plugins(args: Sequence[str]) -> list[ModuleType]:
    """The plugin modules that ``-p NAME`` (or ``-pNAME``) in ``args`` names and this process has
    already imported, for ``pytest.main(args, plugins=...)``. Left to pytest: ``-p no:NAME``, modules
    not imported yet, and any module without a ``pytest_`` hook (``-p doctest`` means pytest's
    own doctest plugin, not the standard library's module of that name)."""
    names = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-p"] + [arg[2:] for arg in args if arg.startswith("-p") and len(arg) > 2]
    modules = [sys.modules.get(name) for name in names if not name.startswith("no:")]
    return [module for module in modules if module is not None and any(attribute.startswith("pytest_") for attribute in vars(module))]


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
