"""``infralens chart``: Lab 07's measured risk drawn as a PNG, and what it says when it cannot draw."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO
from infralens.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_a_missing_chart_extra_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["--root", str(REPO), "chart", "lab07", "--solutions", "--out", str(tmp_path / "chart.png")]) == 2
    error = capsys.readouterr().err
    assert "the chart needs matplotlib, which is not installed" in error and 'python -m pip install -e ".[chart]"' in error
    assert not (tmp_path / "chart.png").exists()


def test_only_labs_with_a_chart_are_drawn(capsys):
    assert main(["--root", str(REPO), "chart", "lab06"]) == 2
    assert "lab06 has no chart; charts exist for lab07" in capsys.readouterr().err


@pytest.mark.slow  # measures all 32 configurations with the model
def test_the_reference_risk_table_is_drawn(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "risk.png"
    assert main(["--root", str(REPO), "chart", "07", "--solutions", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE) and out.stat().st_size > 10_000
    assert f"lab07: 32 configurations measured from solutions/lab07_quality_risk; chart written to {out}" in capsys.readouterr().out


def test_an_unfinished_lab_is_not_drawn(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["--root", str(REPO), "chart", "lab07", "--out", str(tmp_path / "risk.png")]) == 2
    error = capsys.readouterr().err
    assert "exercises/lab07_quality_risk/quality_risk.py is not finished" in error and "pytest --lab 07" in error
