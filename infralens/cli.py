"""The ``infralens`` command: progress, hints, model presets, charts and mutation testing of the checks.

    infralens progress [--lab LAB] [--solutions | --submission PATH]
    infralens hint LAB [--level N] [--exercise NAME]
    infralens watch [--lab LAB]
    infralens models [NAME]
    infralens chart LAB [--out PNG] [--solutions | --submission PATH]
    infralens mutants [LAB ...]
    infralens grade SUBMISSION... [--labs LABS] [--jobs N] [--seed S] [--budget S] [--no-sandbox] [--csv F] [--json F] [--gradescope F] [--junit F]
    infralens merge SHARD.json... --json F [--csv F] [--junit F]
    infralens release OUT
    infralens sandbox
    infralens gradescope OUT

Run it anywhere inside a checkout (it finds the folder holding ``checks/`` and ``exercises/``),
or point it elsewhere with ``--root``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from infralens.hints import HintLedger, load_hints
from infralens.labs import discover_labs, find_repo_root, resolve_lab
from infralens.models import ModelConfig, preset, preset_names
from infralens.progress import LabProgress, render_table
from infralens.runner import last_run_checks, run_checks

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

    watch = commands.add_parser("watch", help="run the checks again whenever a file under exercises/ changes (Ctrl-C to stop)")
    watch.add_argument("--lab", action="append", default=[], help="only these labs: 10, lab10 or lab10_quantization_plan (repeatable)")
    watch.set_defaults(command=_watch)

    models = commands.add_parser("models", help="list the model presets, or show one")
    models.add_argument("name", nargs="?", help="a preset name, e.g. llama-3-8b")
    models.set_defaults(command=_models)

    chart = commands.add_parser("chart", help="draw a lab's measured risk as a PNG (Lab 07; needs the chart extra: matplotlib)")
    chart.add_argument("lab", help="07, lab07 or lab07_quality_risk")
    chart.add_argument("--out", type=Path, default=None, help="the PNG to write (default: lab07_risk_chart.png in the current folder)")
    chart_tree = chart.add_mutually_exclusive_group()
    chart_tree.add_argument("--solutions", action="store_true", help="the references instead of exercises/")
    chart_tree.add_argument("--submission", metavar="PATH", help="another tree: a repo root holding exercises/, or a folder of labNN_* folders")
    chart.set_defaults(command=_chart)

    mutants = commands.add_parser("mutants", help="check that each lab's checks catch its mutants (needs solutions/)")
    mutants.add_argument("labs", nargs="*", help="labs to test (default: every lab with a mutants file)")
    mutants.set_defaults(command=_mutants)

    grade = commands.add_parser("grade", help="grade submissions; learner code runs isolated from the judge")
    grade.add_argument("submissions", nargs="+", type=Path, help="repo roots holding exercises/, or folders of labNN_* folders")
    grade.add_argument("--labs", default="", help="comma-separated labs to grade (default: all), e.g. lab10,lab02")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    grade.add_argument("--seed", type=int, default=None, help="seed for hidden checks' inputs (default: random, recorded in every output)")
    grade.add_argument("--timeout", type=float, default=60.0, help="seconds per check (default 60)")
    grade.add_argument("--call-timeout", type=float, default=10.0, help="seconds per call into learner code (default 10)")
    grade.add_argument("--memory-limit", type=int, default=4096, help="MiB of address space for learner code (default 4096)")
    grade.add_argument("--budget", type=float, default=900.0, help="wall-clock seconds for all of one submission's learner code (default 900)")
    grade.add_argument("--no-sandbox", action="store_true", help="grade without the bubblewrap sandbox (process limits only); recorded in every output")
    grade.add_argument("--shard", default=None, help="i/n: grade only the i-th of n slices of the submissions (a CI matrix job)")
    grade.add_argument("--withhold-hidden", action="store_true", help="replace hidden checks' failure messages with a notice")
    grade.add_argument("--csv", type=Path, help="one row per submission: path, points per lab, total")
    grade.add_argument("--json", type=Path, help="full detail: every check of every submission")
    grade.add_argument("--gradescope", type=Path, help="Gradescope results.json (exactly one submission)")
    grade.add_argument("--junit", type=Path, help="JUnit XML, a testsuite per submission")
    grade.set_defaults(command=_grade)

    merge = commands.add_parser("merge", help="combine the --json outputs of sharded grading runs")
    merge.add_argument("inputs", nargs="+", type=Path)
    merge.add_argument("--json", type=Path, required=True)
    merge.add_argument("--csv", type=Path)
    merge.add_argument("--junit", type=Path)
    merge.set_defaults(command=_merge)

    release = commands.add_parser("release", help="write a student version: no solutions, no hidden checks")
    release.add_argument("out", type=Path)
    release.set_defaults(command=_release)

    sandbox = commands.add_parser("sandbox", help="say whether learner code can be sandboxed here (exit 1 if not), and how to get a sandbox")
    sandbox.set_defaults(command=_sandbox)

    gradescope = commands.add_parser("gradescope", help="write a Gradescope autograder bundle (setup.sh, run_autograder)")
    gradescope.add_argument("out", type=Path)
    gradescope.set_defaults(command=_gradescope)
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
        checks = last_run_checks(root, lab.folder)  # the last run's results while the lab's files are unchanged
        if checks is None:
            checks = run_checks(root, "--lab", lab.folder)[1]["checks"]
        open_exercises = {check["exercise"] for check in checks if check["outcome"] not in ("passed", "skipped")}
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


def _watch(args: argparse.Namespace) -> int:
    from infralens.watch import watch

    root = _root(args)
    labs = discover_labs(root)
    chosen = [resolve_lab(name, labs) for names in args.lab for name in names.split(",") if name.strip()]  # a typo fails here, not on every change
    return watch(root, [f"--lab={lab.folder}" for lab in chosen])


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


def _chart(args: argparse.Namespace) -> int:
    from infralens.chart import chart_lab, draw, load_pyplot, measured_rows
    from infralens.loader import code_root_of_submission

    root = _root(args)
    lab = chart_lab(root, args.lab)
    load_pyplot()  # before measuring: a missing extra is said at once
    if args.submission:
        code_root = code_root_of_submission(Path(args.submission))
        display = str(code_root)
    else:
        display = "solutions" if args.solutions else "exercises"
        code_root = root / display
    rows, float_perplexity, about, (safe, breaks) = measured_rows(code_root, display, lab)
    out = draw(rows, float_perplexity, about, args.out or Path(f"{lab.short}_risk_chart.png"), safe, breaks)
    print(f"{lab.short}: {len(rows)} configurations measured from {display}/{lab.folder}; chart written to {out}")
    return 0


def _mutants(args: argparse.Namespace) -> int:
    from infralens.mutants import run_mutants

    root = _root(args)
    labs = discover_labs(root)
    chosen = [resolve_lab(name, labs) for name in args.labs] or [lab for lab in labs if (root / "tests" / "mutants" / f"{lab.folder}.toml").is_file()]
    survivors = unstable = 0
    for lab in chosen:
        for result in run_mutants(root, lab.folder):
            verdict = ("caught" if result.caught_by_public else "hidden") if result.caught else "SURVIVED"
            survivors += not result.caught
            unstable += not result.hidden_stable
            print(f"{lab.short}  {verdict:<8}  {result.mutant.name:<28}  {result.mutant.why}")
            if not result.caught:
                print(f"          {result.detail}")
            if not result.hidden_stable:
                print("          the hidden checks' verdict on this mutant depends on the seed")
    print("\n(caught: a public check fails; hidden: only hidden checks fail, so a student release would miss it)")
    print(f"{survivors} mutant{'s' if survivors != 1 else ''} survived" if survivors else "every mutant was caught")
    if unstable:
        print(f"{unstable} mutant{'s' if unstable != 1 else ''} got a seed-dependent verdict from the hidden checks")
    return 1 if survivors or unstable else 0


if __name__ == "__main__":
    raise SystemExit(main())


def _grade(args: argparse.Namespace) -> int:
    import os
    import secrets

    from infralens.grading import reports
    from infralens.grading.batch import GradeOptions, GraderTampered, grade, isolation_record, shard, summary
    from infralens.grading.sandbox import HOW_TO_GET_ONE, availability

    root = _root(args)
    labs = discover_labs(root)
    chosen = tuple(resolve_lab(name, labs).folder for name in args.labs.split(",") if name.strip())
    given = [Path(os.path.abspath(path)) for path in args.submissions]  # against the folder the command ran in
    submissions = shard(given, args.shard) if args.shard else given
    if args.gradescope and len(submissions) != 1:
        raise ValueError(f"--gradescope writes one submission's results.json; got {len(submissions)} submissions")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.budget <= 0:
        raise ValueError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    if not args.no_sandbox and not availability().available:
        raise RuntimeError(f"learner code must run in a sandbox, and none is available here: {availability().reason}.\nTo get one: {HOW_TO_GET_ONE}")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    options = GradeOptions(chosen, seed, args.timeout, args.call_timeout, args.memory_limit, args.jobs, args.budget, "processes" if args.no_sandbox else "sandbox")
    isolation = isolation_record(options)
    if args.no_sandbox:
        print(f"WARNING: {isolation}", file=sys.stderr)
    print(f"grading {len(submissions)} submission{'s' if len(submissions) != 1 else ''} · seed {seed} · {args.jobs} at a time", file=sys.stderr)
    try:
        checks, results = grade(root, submissions, options, on_done=_progress_bar())
        tampered = None
    except GraderTampered as error:
        checks, results, tampered = error.checks, error.results, error
    if args.csv:
        reports.write_csv(args.csv, checks, results, isolation)
    if args.json:
        reports.write_json(args.json, checks, results, isolation, args.withhold_hidden)
    if args.junit:
        reports.write_junit(args.junit, checks, results, isolation, args.withhold_hidden)
    if args.gradescope:
        reports.write_gradescope(args.gradescope, checks, results[0], isolation, withhold_hidden=True)
    print(summary(checks, results))
    if tampered is not None:
        print(f"infralens grade: {tampered}", file=sys.stderr)
        return 3
    return 0


def _progress_bar():
    """A one-line bar on a terminal; one line per submission otherwise (CI logs)."""
    live = sys.stderr.isatty()

    def show(done: int, total: int, result) -> None:
        status = f"{result.path}: {result.error}" if result.error else f"{result.path}: {sum(c['outcome'] == 'passed' for c in result.checks)}/{len(result.checks)} checks"
        if live:
            filled = round(30 * done / total)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}  {status[:60]:<60}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        else:
            print(f"[{done}/{total}] {status} ({result.seconds:.1f} s)", file=sys.stderr, flush=True)

    return show


def _merge(args: argparse.Namespace) -> int:
    from infralens.grading import reports
    from infralens.grading.batch import summary

    checks, results, isolation = reports.merge(list(args.inputs))
    reports.write_json(args.json, checks, results, isolation)
    if args.csv:
        reports.write_csv(args.csv, checks, results, isolation)
    if args.junit:
        reports.write_junit(args.junit, checks, results, isolation)
    print(summary(checks, results))
    return 0


def _release(args: argparse.Namespace) -> int:
    from infralens.grading.release import write_release

    out = write_release(_root(args), args.out)
    print(f"student version written to {out}: no solutions/, no hidden checks; `cd {out} && python -m pytest` is the learner's run")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from infralens.grading.sandbox import HOW_TO_GET_ONE, availability

    found = availability()
    if found.available:
        print(f"sandbox available: {found.bwrap} can create the namespaces learner code runs in")
        return 0
    print(f"no sandbox here: {found.reason}.\nTo get one: {HOW_TO_GET_ONE}", file=sys.stderr)
    return 1


def _gradescope(args: argparse.Namespace) -> int:
    from infralens.grading.release import write_gradescope_bundle

    archive = write_gradescope_bundle(_root(args), args.out)
    print(f"Gradescope autograder bundle written to {archive} (upload it as the autograder zip)")
    return 0
