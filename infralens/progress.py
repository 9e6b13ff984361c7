"""The progress table: per lab, checks passed, points, status and the next thing to do.

Built from :class:`CheckRecord` rows, which the pytest plugin writes for every check it runs
(also to JSON with ``--infralens-report``), so ``pytest`` and ``infralens progress`` print the
same table from the same facts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PASSED, FAILED, NOT_STARTED, SKIPPED, ERROR = "passed", "failed", "not_started", "skipped", "error"
HEADLINE_CHARS = 200


@dataclass(frozen=True)
class CheckRecord:
    """One check's result, as data (this is also the JSON report's row)."""

    nodeid: str
    lab: str
    exercise: str
    points: int
    hidden: bool
    outcome: str
    message: str = ""
    function: str = ""  # for "not_started": the learner function that still raises NotImplementedError
    broken: str = ""  # "file:line" of a learner module that does not import, when that is why the check failed

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LabProgress:
    """One row of the progress table."""

    lab: str
    short: str
    title: str
    passed: int
    total: int
    points: int
    max_points: int
    skipped: int
    status: str
    next_step: str
    lab_checks: int | None = None  # checks the lab has in all; None when the run collected only some (a file, a node id)
    complete: bool = True  # every check of the lab ran: nothing deselected (--exercise, -k, --deselect), nothing cut short (-x)


def summarize_lab(
    lab_folder: str, records: list[CheckRecord], exercise_order: list[tuple[str, str]], code_display_root: str, lab_checks: int | None = None
) -> LabProgress:
    """Summarize one lab's records; ``exercise_order`` is ``[(exercise, file), ...]`` in learning order.

    ``lab_checks`` is how many checks the lab has in all (None: unknown, the run collected only some
    of them); when fewer ran, the run was narrowed and the lab is never called done.

    Status: ``done`` when every check of the lab ran and passed; ``selection passes`` when every
    check that ran passed but not all of the lab's checks ran; ``not started`` when nothing passed
    and nothing failed for a reason other than ``NotImplementedError``; ``in progress`` otherwise.
    Skipped checks (a GPU check on a machine without CUDA) count in neither direction.
    """
    ran = [r for r in records if r.outcome != SKIPPED]
    passed = [r for r in ran if r.outcome == PASSED]
    open_records = [r for r in ran if r.outcome != PASSED]
    complete = lab_checks is not None and len(records) >= lab_checks
    if not open_records:
        status = "done" if complete else "selection passes"
    elif not passed and all(r.outcome == NOT_STARTED for r in open_records):
        status = "not started"
    else:
        status = "in progress"
    number, short_title = lab_folder[3:5], lab_folder.split("_", 1)[1].replace("_", " ")
    return LabProgress(
        lab=lab_folder,
        short=f"lab{number}",
        title=short_title,
        passed=len(passed),
        total=len(ran),
        points=sum(r.points for r in passed),
        max_points=sum(r.points for r in ran),
        skipped=len(records) - len(ran),
        status=status,
        next_step=_next_step(lab_folder, open_records, exercise_order, code_display_root) if open_records or complete else _run_all(lab_folder, lab_checks),
        lab_checks=lab_checks,
        complete=complete,
    )


def _run_all(lab_folder: str, lab_checks: int | None) -> str:
    every = f"all {lab_checks}" if lab_checks else "all of them"
    return f"the selected checks pass; run {every} with `pytest --lab {lab_folder[3:5]}`"


def _next_step(lab_folder: str, open_records: list[CheckRecord], exercise_order: list[tuple[str, str]], code_display_root: str) -> str:
    if not open_records:
        return "all checks pass"
    broken = [r for r in open_records if r.broken]
    if broken:  # nothing else can be judged until the file imports: name the file, not an exercise
        return f"fix the file first: {_headline(max(broken, key=lambda r: len(r.message)).message)}"
    rank = {name: index for index, (name, _file) in enumerate(exercise_order)}
    files = dict(exercise_order)
    first = min(open_records, key=lambda r: (rank.get(r.exercise, len(rank)), r.nodeid))
    short = f"lab{lab_folder[3:5]}"
    where = f"{code_display_root}/{lab_folder}/{files[first.exercise]}" if first.exercise in files else f"{code_display_root}/{lab_folder}/"
    mine = [r for r in open_records if r.exercise == first.exercise]
    if all(r.outcome == NOT_STARTED for r in mine):
        return f"start `{first.exercise}` in {where} (stuck? infralens hint {short})"
    # A public check's message is written for the learner; prefer it over a hidden comparison.
    failing = min((r for r in mine if r.outcome != NOT_STARTED), key=lambda r: r.hidden)
    return f"fix `{first.exercise}` ({len(mine)} check{'s' if len(mine) != 1 else ''} open): {_headline(failing.message or failing.nodeid)}"


def _headline(message: str) -> str:
    headline = message.splitlines()[0] if message else ""
    return headline if len(headline) <= HEADLINE_CHARS else headline[: HEADLINE_CHARS - 1] + "…"


def render_table(rows: list[LabProgress], code_display_root: str) -> str:
    """A fixed-width table followed by one "next" line per unfinished lab."""
    header = ("lab", "title", "checks", "points", "status")
    body = [
        (
            row.short,
            row.title,
            f"{row.passed}/{row.total}" + _selected(row) + (f" (+{row.skipped} skipped)" if row.skipped else ""),
            f"{row.points}/{row.max_points}",
            row.status,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = [f"InfraLens progress ({code_display_root}/)", "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in body]
    unfinished = [row for row in rows if row.status != "done"]
    if unfinished:
        lines.append("")
        lines += [f"next for {row.short}: {row.next_step}" for row in unfinished]
    elif rows:
        lines += ["", "every selected lab is done."]
    return "\n".join(lines)


def _selected(row: LabProgress) -> str:
    """`` selected of 21`` after a narrowed run: the count is of the checks that ran, not the lab's."""
    if row.complete:
        return ""
    return f" selected of {row.lab_checks}" if row.lab_checks else " selected"
