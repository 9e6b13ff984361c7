"""The ``infralens`` command: progress, hints, model presets and mutation testing of the checks.

    infralens progress [--lab LAB] [--solutions | --submission PATH]
    infralens hint LAB [--level N] [--exercise NAME]
    infralens models [NAME]
    infralens mutants [LAB ...]

Run it anywhere inside a checkout (it finds the folder holding ``checks/`` and ``exercises/``),
or point it elsewhere with ``--root``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from infralens.hints import HintLedger, HintsError, load_hints
from infralens.labs import discover_labs, find_repo_root, resolve_lab
from infralens.models import ModelConfig, preset, preset_names
from infralens.progress import LabProgress, render_table
from infralens.runner import run_checks

HINT_LEDGER = Path(".infralens") / "hints.json"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"infralens {args.command_name}: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infralens", description="InfraLens Katas: progress, hints, model presets, mutation tests.")
    parser.add_argument("--root", type=Path, default=None, help="the checkout to use (default: found from the current folder)")
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    progress = commands.add_parser("progress", help="print the progress table (runs the checks quietly)")
    progress.add_argument("--lab", action="append", default=[], help="only these labs: 10, lab10 or lab10_quantization_plan (repeatable)")
    tree = progress.add_mutually_exclusive_group()
    tree.add_argument("--solutions", action="store_true", help="the references instead of exercises/")
    tree.add_argument("--submission", metavar="PATH", help="another tree: a repo root holding exercises/, or a folder of labNN_* folders")
    progress.set_defaults(command=_progress)

    hint = commands.add_parser("hint", help="the next hint for the first unsolved exercise of a lab")
    hint.add_argument("lab", help="10, lab10 or lab10_quantization_plan")
    hint.add_argument("--level", type=int, default=None, help="show this level (1 = a question, then the approach, then the near-answer)")
    hint.add_argument("--exercise", default=None, help="hint for this exercise instead of the first unsolved one")
    hint.set_defaults(command=_hint)

    models = commands.add_parser("models", help="list the model presets, or show one")
    models.add_argument("name", nargs="?", help="a preset name, e.g. llama-3-8b")
    models.set_defaults(command=_models)

    mutants = commands.add_parser("mutants", help="check that each lab's checks catch its mutants (needs solutions/)")
    mutants.add_argument("labs", nargs="*", help="labs to test (default: every lab with a mutants file)")
    mutants.set_defaults(command=_mutants)
    return parser


def _root(args: argparse.Namespace) -> Path:
    return find_repo_root(args.root)


def _progress(args: argparse.Namespace) -> int:
    root = _root(args)
    options = ["--solutions"] if args.solutions else ["--submission", args.submission] if args.submission else []
    for lab in args.lab:
        options += ["--lab", lab]
    _exit, report = run_checks(root, *options)
    display = "solutions" if args.solutions else args.submission or "exercises"
    print(render_table([LabProgress(**row) for row in report["labs"]], display))
    return 0


def _hint(args: argparse.Namespace) -> int:
    root = _root(args)
    lab = resolve_lab(args.lab, discover_labs(root))
    exercises = load_hints(root / "exercises" / lab.folder)
    by_name = {exercise.name: exercise for exercise in exercises}
    if args.exercise is not None:
        if args.exercise not in by_name:
            raise ValueError(f"{lab.short} has no exercise {args.exercise!r}; its exercises are {', '.join(by_name)}")
        exercise = by_name[args.exercise]
    else:
        _exit, report = run_checks(root, "--lab", lab.folder)
        open_exercises = {check["exercise"] for check in report["checks"] if check["outcome"] not in ("passed", "skipped")}
        unsolved = [e for e in exercises if e.name in open_exercises]
        if not unsolved:
            print(f"every check of {lab.short} passes: nothing left to hint. (A specific one: --exercise NAME)")
            return 0
        exercise = unsolved[0]
    ledger = HintLedger(root / HINT_LEDGER)
    total = len(exercise.hints)
    if args.level is not None:
        if not 1 <= args.level <= total:
            raise ValueError(f"--level must be between 1 and {total} for `{exercise.name}`, got {args.level}")
        level = args.level
    else:
        level = min(ledger.seen(lab.folder, exercise.name) + 1, total)
    ledger.record(lab.folder, exercise.name, level)
    print(f"{lab.short} · `{exercise.name}` in exercises/{lab.folder}/{exercise.file} · hint {level} of {total}\n")
    print(exercise.hints[level - 1])
    if level < total:
        print(f"\n(still stuck? `infralens hint {lab.short}` again shows hint {level + 1} of {total})")
    return 0


def _models(args: argparse.Namespace) -> int:
    if args.name:
        model = preset(args.name)
        width = max(len(f.name) for f in fields(ModelConfig))
        for f in fields(ModelConfig):
            print(f"{f.name.ljust(width)}  {getattr(model, f.name)}")
        return 0
    print(f"{'preset':<18} {'layers':>6} {'hidden':>6} {'heads':>5} {'kv':>3} {'head_dim':>8} {'published params':>17}")
    for name in preset_names():
        m = preset(name)
        published = f"{m.published_parameters:,}" if m.published_parameters else "-"
        print(f"{name:<18} {m.num_hidden_layers:>6} {m.hidden_size:>6} {m.num_attention_heads:>5} {m.num_key_value_heads:>3} {m.head_dim:>8} {published:>17}")
    return 0


def _mutants(args: argparse.Namespace) -> int:
    from infralens.mutants import run_mutants

    root = _root(args)
    labs = discover_labs(root)
    chosen = [resolve_lab(name, labs) for name in args.labs] or [lab for lab in labs if (root / "tests" / "mutants" / f"{lab.folder}.toml").is_file()]
    survivors = 0
    for lab in chosen:
        for result in run_mutants(root, lab.folder):
            verdict = ("caught" if result.caught_by_public else "hidden") if result.caught else "SURVIVED"
            survivors += not result.caught
            print(f"{lab.short}  {verdict:<8}  {result.mutant.name:<28}  {result.mutant.why}")
            if not result.caught:
                print(f"          {result.detail}")
    print("\n(caught: a public check fails; hidden: only hidden checks fail, so a student release would miss it)")
    print(f"{survivors} mutant{'s' if survivors != 1 else ''} survived" if survivors else "every mutant was caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
