"""Grade outputs: CSV for the gradebook, JSON with everything, Gradescope ``results.json``, JUnit XML.

All four are written from the same :class:`~infralens.grading.batch.SubmissionResult` rows, and shard
results merge back into one JSON with :func:`merge`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from xml.etree import ElementTree

from infralens.grading.batch import SubmissionResult

HIDDEN_WITHHELD = "hidden check: feedback is withheld until grades are published"


def lab_columns(checks: list[dict]) -> list[str]:
    return sorted({c["lab"] for c in checks})


def write_csv(path: Path, checks: list[dict], results: list[SubmissionResult]) -> None:
    """One row per submission: its path, one column of points per lab, the total and the maximum."""
    labs = lab_columns(checks)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["submission", *labs, "total", "max_points", "seed", "error"])
        for result in results:
            by_lab = result.points_by_lab(checks)
            total, maximum = result.total(checks)
            writer.writerow([result.path, *(by_lab.get(lab, (0, 0))[0] for lab in labs), total, maximum, result.seed, result.error or ""])


def to_json(checks: list[dict], results: list[SubmissionResult], withhold_hidden: bool = False) -> dict:
    """Everything: the catalogue of checks and, per submission, every check's outcome and message."""
    submissions = []
    for result in results:
        total, maximum = result.total(checks)
        rows = [_visible(c, withhold_hidden) for c in result.checks]
        submissions.append({
            "path": result.path,
            "seed": result.seed,
            "total": total,
            "max_points": maximum,
            "labs": {lab: {"points": p, "max_points": m} for lab, (p, m) in sorted(result.points_by_lab(checks).items())},
            "error": result.error,
            "seconds": round(result.seconds, 3),
            "checks": rows,
        })
    return {"checks": checks, "submissions": submissions}


def write_json(path: Path, checks: list[dict], results: list[SubmissionResult], withhold_hidden: bool = False) -> None:
    Path(path).write_text(json.dumps(to_json(checks, results, withhold_hidden), indent=2) + "\n", encoding="utf-8")


def write_gradescope(path: Path, checks: list[dict], result: SubmissionResult, withhold_hidden: bool = True) -> None:
    """Gradescope's ``results.json``: ``score``, ``execution_time`` and one ``tests`` entry per check.

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
            "output": output,
            "visibility": "after_published" if check["hidden"] else "visible",
        })
    total, _maximum = result.total(checks)
    document = {"score": total, "execution_time": round(result.seconds, 3), "tests": tests}
    if result.error:
        document["output"] = result.error
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def write_junit(path: Path, checks: list[dict], results: list[SubmissionResult], withhold_hidden: bool = False) -> None:
    """JUnit XML: a ``testsuite`` per submission, a ``testcase`` per check, ``failure`` with the message."""
    suites = ElementTree.Element("testsuites", name="infralens grade")
    for result in results:
        outcomes = {c["nodeid"]: c for c in result.checks}
        failures = sum(1 for c in checks if outcomes.get(c["nodeid"], {}).get("outcome") != "passed")
        suite = ElementTree.SubElement(suites, "testsuite", name=result.path, tests=str(len(checks)), failures=str(failures), time=f"{result.seconds:.3f}")
        for check in checks:
            case = ElementTree.SubElement(suite, "testcase", classname=check["lab"], name=check["nodeid"].split("::", 1)[1])
            row = outcomes.get(check["nodeid"])
            if row is None or row["outcome"] != "passed":
                message = _visible(row, withhold_hidden)["message"] if row else (result.error or "not run")
                failure = ElementTree.SubElement(case, "failure", message=message.splitlines()[0][:500] if message else "failed")
                failure.text = message
    ElementTree.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def _visible(check: dict, withhold_hidden: bool) -> dict:
    if withhold_hidden and check.get("hidden") and check.get("outcome") != "passed":
        return {**check, "message": HIDDEN_WITHHELD}
    return check


def merge(paths: list[Path]) -> tuple[list[dict], list[SubmissionResult]]:
    """Combine the JSON outputs of several shards; they must grade the same checks."""
    checks: list[dict] | None = None
    results: list[SubmissionResult] = []
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if checks is None:
            checks = data["checks"]
        elif [c["nodeid"] for c in data["checks"]] != [c["nodeid"] for c in checks]:
            raise ValueError(f"{path} grades different checks than {paths[0]}: merge shards of one grading run only")
        for row in data["submissions"]:
            results.append(SubmissionResult(row["path"], row["seed"], row["checks"], row["error"], row["seconds"]))
    if checks is None:
        raise ValueError("nothing to merge: give the JSON files written by infralens grade --json")
    paths_seen = [r.path for r in results]
    duplicated = sorted({p for p in paths_seen if paths_seen.count(p) > 1})
    if duplicated:
        raise ValueError(f"submissions graded in more than one shard: {', '.join(duplicated)}")
    return checks, sorted(results, key=lambda r: r.path)
