"""Hint files and lab names: the data formats the tooling reads."""

from __future__ import annotations

import pytest

from conftest import REPO, write
from infralens.hints import HintLedger, HintsError, load_hints
from infralens.labs import TRACK, Lab, discover_labs, find_repo_root, resolve_lab


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no [[exercise]] tables"),
        ("[[exercise]]\nname = 'f'\nfile = 'm.py'\nhints = ['Why?', 'How.']\n", "at least 3 non-empty strings"),
        ("[[exercise]]\nname = 'f'\nfile = 'm.py'\nhints = ['Do it.', 'How.', 'This.']\n", "the first hint must be a question"),
        ("[[exercise]]\nname = 'f'\nfile = 'm'\nhints = ['Why?', 'How.', 'This.']\n", "`file` must name the starter module"),
        ("[[exercise]]\nfile = 'm.py'\nhints = ['Why?', 'How.', 'This.']\n", "`name` must be the starter's function or class name"),
        ("[[exercise]]\nname = 'f'\nfile = 'm.py'\nhints = ['Why?', 'How.', 'This.']\n" * 2, "exercises listed twice: f"),
        ("[[exercise]\n", "is not valid TOML"),
    ],
    ids=["empty", "two-levels", "no-question", "bad-file", "no-name", "duplicate", "bad-toml"],
)
def test_malformed_hint_files_are_rejected_with_the_reason(tmp_path, text, message):
    write(tmp_path / "hints.toml", text) if text else (tmp_path / "hints.toml").write_text("")
    with pytest.raises(HintsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_hints(tmp_path)


def test_missing_hint_file(tmp_path):
    with pytest.raises(HintsError, match="hints.toml is missing"):
        load_hints(tmp_path)


def test_hint_ledger_survives_a_damaged_file(tmp_path):
    ledger = HintLedger(tmp_path / ".infralens" / "hints.json")
    assert ledger.seen("lab10_quantization_plan", "saved_memory") == 0
    ledger.record("lab10_quantization_plan", "saved_memory", 2)
    ledger.record("lab10_quantization_plan", "saved_memory", 1)
    assert ledger.seen("lab10_quantization_plan", "saved_memory") == 2, "a lower --level must not forget what was seen"
    ledger.path.write_text("{not json")
    assert ledger.seen("lab10_quantization_plan", "saved_memory") == 0


def test_labs_are_named_by_number_short_name_or_folder():
    labs = [Lab(10, "lab10_quantization_plan"), Lab(2, "lab02_kv_cache")]
    for name in ("10", "lab10", "LAB10", "lab10_quantization_plan", " 10 "):
        assert resolve_lab(name, labs).folder == "lab10_quantization_plan"
    assert resolve_lab("2", labs).folder == resolve_lab("02", labs).folder == "lab02_kv_cache"
    with pytest.raises(ValueError, match="unknown lab 'lab7': the labs here are lab10, lab02"):
        resolve_lab("lab7", labs)
    assert Lab(10, "lab10_quantization_plan").title == "quantization plan"


def test_the_track_names_every_lab_of_this_checkout_by_its_folder():
    assert {lab.number: lab.folder for lab in discover_labs(REPO)} == {number: folder for number, (folder, _title) in TRACK.items()}


def test_this_checkout_is_found_from_a_subfolder():
    assert find_repo_root(REPO / "checks" / "lab10_quantization_plan") == REPO
    assert [lab.number for lab in discover_labs(REPO)] == sorted(lab.number for lab in discover_labs(REPO))
