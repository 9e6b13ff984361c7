"""The judge's own pytest options: how learner code is confined, and the submission's time budget.

``infralens grade`` loads this plugin into every judging process (``-p infralens.grading.judging``)
next to the learner-facing plugin, and it hands that plugin the worker to use::

    pytest checks --submission=COPY --isolate -p infralens.grading.judging --isolation=sandbox --budget=600

``--isolation=sandbox`` refuses to run learner code without bubblewrap; ``processes`` is what
``infralens grade --no-sandbox`` asks for. ``--budget`` is the wall-clock seconds all of one
submission's calls into learner code may take together: once used up, every remaining check
fails with that reason (the grader kills the whole judge a little later as a backstop).
"""

from __future__ import annotations

import sys

import pytest

HELP_ISOLATION = "with --isolate: sandbox (bubblewrap, required), processes (limits only) or auto (the sandbox where available)"
HELP_BUDGET = "with --isolate: wall-clock seconds all calls into one submission's code may take together (default: no budget)"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("infralens-judge", "InfraLens grading judge")
    group.addoption("--isolation", choices=("auto", "sandbox", "processes"), default="auto", help=HELP_ISOLATION)
    group.addoption("--budget", metavar="SECONDS", type=float, default=None, help=HELP_BUDGET)


def pytest_configure(config: pytest.Config) -> None:
    sys.dont_write_bytecode = True  # the judge never leaves bytecode that a later run would import


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Give the learner-facing plugin a worker built with this judge's isolation and budget."""
    config = session.config
    infralens = config.pluginmanager.get_plugin("infralens-session")
    if infralens is None or not config.getoption("isolate") or config.getoption("collectonly"):
        return
    from infralens.grading.remote import LearnerProcessError, Worker, worker_preload

    try:
        infralens.worker = Worker(
            infralens.code_root, infralens.code_display_root, config.getoption("call_timeout"), config.getoption("memory_limit") << 20,
            isolation=config.getoption("isolation"), budget_seconds=config.getoption("budget"),
            preload=worker_preload(config.rootpath, infralens.code_root),
        )
    except LearnerProcessError as error:
        raise pytest.UsageError(str(error)) from None
