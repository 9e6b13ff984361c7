"""Grade outputs: CSV for the gradebook, JSON with everything, Gradescope ``results.json``, JUnit XML.

All four are written from the same :class:`~infralens.grading.batch.SubmissionResult` rows, only by
the grader process, after every judge and worker of the batch is gone, and atomically (a temporary
file renamed into place). Every text that learner code could have influenced passes through
:func:`~infralens.grading.text.safe_text`; CSV cells cannot start a formula. Each output records how
learner code was isolated (``isolation``). Shard results merge back into one JSON with :func:`merge`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from xml.etree import ElementTree

from infralens.grading.batch import SubmissionResult
from infralens.grading.text import csv_cell, safe_text

HIDDEN_WITHHELD = "hidden check: feedback is withheld until grades are published"


def lab_columns(checks: list[dict]) -> list[str]:
    return sorted({c["lab"] for c in checks})


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_csv(path: Path, checks: list[dict], results: list[SubmissionResult], isolation: str) -> None:
    """One row per submission: its path, one column of points per lab, the total, the maximum, and how it was isolated."""
    labs = lab_columns(checks)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["submission", *labs, "total", "max_points", "seed", "error", "isolation"])
    for result in results:
        by_lab = result.points_by_lab(checks)
        total, maximum = result.total(checks)
        row = [safe_text(result.path), *(by_lab.get(lab, (0, 0))[0] for lab in labs), total, maximum, result.seed, safe_text(result.error or ""), isolation]
        writer.writerow([csv_cell(cell) for cell in row])
    write_atomically(path, text.getvalue().encode("utf-8"))


def to_json(checks: list[dict], results: list[SubmissionResult], isolation: str, withhold_hidden: bool = False) -> dict:
    """Everything: the catalogue of checks and, per submission, every check's outcome and message."""
    submissions = []
    for result in results:
        total, maximum = result.total(checks)
        submissions.append({
            "path": safe_text(result.path),
            "seed": result.seed,
            "total": total,
            "max_points": maximum,
            "labs": {lab: {"points": p, "max_points": m} for lab, (p, m) in sorted(result.points_by_lab(checks).items())},
            "error": safe_text(result.error) if result.error else None,
            "seconds": round(result.seconds, 3),
            "checks": [_visible(c, withhold_hidden) for c in result.checks],
        })
    return {"isolation": isolation, "checks": checks, "submissions": submissions}


def write_json(path: Path, checks: list[dict], results: list[SubmissionResult], isolation: str, withhold_hidden: bool = False) -> None:
    write_atomically(path, (json.dumps(to_json(checks, results, isolation, withhold_hidden), indent=2) + "\n").encode("utf-8"))


def write_gradescope(path: Path, checks: list[dict], result: SubmissionResult, isolation: str, withhold_hidden: bool = True) -> None:
    """Gradescope's ``results.json``: ``score``, ``execution_time``, one ``tests`` entry per check,
    and ``output`` saying how learner code was isolated (and why nothing was graded, if so).

    Hidden checks are ``after_published``: students see them once grades are released.
    """
    outcomes = {c["nodeid"]: c for c in result.checks}
    tests = []
    for check in checks:
        row = outcomes.get(check["nodeid"])
        passed = row is not None and row["outcome"] == "passed"
        output = "" if passed else (row["message"] if row else (result.error or "not run"))
        if check["hidden"] and withhold_hidden and not passed:
            output = HIDDEN_WITHHELD
        tests.append({
            "name": f"{check['lab']} · {check['nodeid'].split('::', 1)[1]}",
            "score": check["points"] if passed else 0,
            "max_score": check["points"],
            "status": "passed" if passed else "failed",
            "output": safe_text(output),
            "visibility": "after_published" if check["hidden"] else "visible",
        })
    total, _maximum = result.total(checks)
    lines = [f"isolation: {isolation}"] + ([safe_text(result.error)] if result.error else [])
    document = {"score": total, "execution_time": round(result.seconds, 3), "output": "\n".join(lines), "tests": tests}
    write_atomically(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def write_junit(path: Path, checks: list[dict], results: list[SubmissionResult], isolation: str, withhold_hidden: bool = False) -> None:
    """JUnit XML: a ``testsuite`` per submission, a ``testcase`` per check, ``failure`` with the message."""
    suites = ElementTree.Element("testsuites", name="infralens grade")
    ElementTree.SubElement(ElementTree.SubElement(suites, "properties"), "property", name="isolation", value=isolation)
    for result in results:
        outcomes = {c["nodeid"]: c for c in result.checks}
        failures = sum(1 for c in checks if outcomes.get(c["nodeid"], {}).get("outcome") != "passed")
        suite = ElementTree.SubElement(suites, "testsuite", name=safe_text(result.path), tests=str(len(checks)), failures=str(failures), time=f"{result.seconds:.3f}")
        for check in checks:
            case = ElementTree.SubElement(suite, "testcase", classname=check["lab"], name=check["nodeid"].split("::", 1)[1])
            row = outcomes.get(check["nodeid"])
            if row is None or row["outcome"] != "passed":
                message = safe_text(_visible(row, withhold_hidden)["message"] if row else (result.error or "not run"))
                failure = ElementTree.SubElement(case, "failure", message=message.splitlines()[0][:500] if message else "failed")
                failure.text = message
    write_atomically(path, ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True))


def _visible(check: dict, withhold_hidden: bool) -> dict:
    if withhold_hidden and check.get("hidden") and check.get("outcome") != "passed":
        return {**check, "message": HIDDEN_WITHHELD}
    return {**check, "message": safe_text(check.get("message", ""))}


def merge(paths: list[Path]) -> tuple[list[dict], list[SubmissionResult], str]:
    """Combine the JSON outputs of several shards; they must grade the same checks. Returns the
    checks, the results, and the isolation the shards record (all of them, where they differ)."""
    checks: list[dict] | None = None
    results: list[SubmissionResult] = []
    isolations: list[str] = []
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if checks is None:
            checks = data["checks"]
        elif [c["nodeid"] for c in data["checks"]] != [c["nodeid"] for c in checks]:
            raise ValueError(f"{path} grades different checks than {paths[0]}: merge shards of one grading run only")
        isolations.append(str(data.get("isolation", "unknown (written before isolation was recorded)")))
        for row in data["submissions"]:
            results.append(SubmissionResult(row["path"], row["seed"], row["checks"], row["error"], row["seconds"]))
    if checks is None:
        raise ValueError("nothing to merge: give the JSON files written by infralens grade --json")
    paths_seen = [r.path for r in results]
    duplicated = sorted({p for p in paths_seen if paths_seen.count(p) > 1})
    if duplicated:
        raise ValueError(f"submissions graded in more than one shard: {', '.join(duplicated)}")
    return checks, sorted(results, key=lambda r: r.path), " | ".join(dict.fromkeys(isolations))
