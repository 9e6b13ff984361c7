"""The lab seam's loader: learner code is compiled from the file as it is now, never from old bytecode."""

from __future__ import annotations

import os
import py_compile
import sys

from conftest import write
from infralens.loader import LabCode

BEFORE = "from .helper import SIGN\n\n\ndef add(a, b):\n    return a - b\n"
AFTER = "from .helper import SIGN\n\n\ndef add(a, b):\n    return a + b\n"


def test_an_edit_within_the_second_of_the_last_run_is_what_gets_checked(tmp_path, monkeypatch):
    """Python trusts a ``.pyc`` whose source kept its size and its modification time in whole
    seconds: ``a - b`` fixed to ``a + b`` within a second of a run that cached it would be
    checked as ``a - b`` by a plain import. The loader reads the source, for a helper module too."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as on a machine that caches bytecode
    demo, helper = tmp_path / "code/lab99_demo/demo.py", tmp_path / "code/lab99_demo/helper.py"
    write(demo, BEFORE)
    write(helper, "SIGN = -1\n")
    stale = [py_compile.compile(str(path)) for path in (demo, helper)]  # what the earlier run left
    for path, text in ((demo, AFTER), (helper, "SIGN = +1\n")):
        stamp = path.stat()
        path.write_text(text, encoding="utf-8")  # the same size
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # and, to the second, the same time

    code = LabCode(tmp_path / "code", "lab99_demo", "code")

    assert code.demo.add(2, 3) == 5, "the learner's edit was not what ran"
    assert code.demo.SIGN == 1, "the helper module's edit was not what ran"
    assert sorted(path.name for path in (demo.parent / "__pycache__").iterdir()) == sorted(os.path.basename(path) for path in stale), "no bytecode is written"
