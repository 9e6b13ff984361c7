"""Sessions the tooling starts itself: plugins it has imported are handed to pytest, not searched for."""

from __future__ import annotations

import doctest
import importlib.metadata

import pytest
import pytest_timeout

import infralens.plugin
from infralens.sessions import PLUGIN_ARGS, imported_plugins, own_session


def test_imported_plugins_are_the_modules_that_dash_p_names():
    args = ["-p", "no:cacheprovider", *PLUGIN_ARGS, "-pdoctest", "-p", "not_a_module_anywhere"]
    assert imported_plugins(args) == [pytest_timeout, infralens.plugin], "`-p no:NAME`, unknown modules and a module without hooks stay pytest's"
    assert doctest not in imported_plugins(["-p", "doctest"]), "`-p doctest` names pytest's own plugin, never the standard library's module"


def test_a_session_given_its_imported_plugins_reads_no_distribution_metadata(tmp_path, monkeypatch):
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n", encoding="utf-8")
    args = [str(tmp_path), "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-p", "no:terminal", *PLUGIN_ARGS]
    searches = []
    search = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda *a, **k: searches.append(a) or search(*a, **k))
    with own_session():
        assert pytest.main(args, plugins=imported_plugins(args)) == 0
        assert not searches, "pytest searched the installed distributions for plugins this process had already imported"
        assert pytest.main(args) == 0
    assert searches, "without them pytest searches for each `-p` plugin (so the first half of this test can fail)"
