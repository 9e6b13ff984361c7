"""Judging processes forked from one warm process per batch: no submission pays the start-up again.

A judge is a fresh ``pytest`` session over the grader's checks for one submission. Started from
scratch, each judge pays a Python start, the pytest import and, for labs that use them, the torch
and NumPy imports: about 2 s on a small machine, per submission. :class:`Judges` starts one
*forkserver* per batch that imports those once (the trusted modules the checks and references
import, never anything of a submission) and then only forks: each judge is a child of it, in a
session of its own (the grader kills its whole process group), run with the arguments, working
folder and environment a fresh ``python -B -m pytest ...`` would have, its output going to a file
of the grader's.

Protocol, one JSON object per line. Requests on the forkserver's stdin: ``{"id", "args", "output"}``.
Replies on its stdout: ``{"ready": true}`` once, then ``{"id", "pid"}`` when a judge starts and
``{"id", "exit"}`` when it has ended (``exit`` as :func:`os.waitstatus_to_exitcode` gives it).
When its stdin closes (the batch is done, or the grader died) the forkserver kills every judge
still running and exits.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from infralens.grading.remote import STARTUP_TIMEOUT_SECONDS, heavy_libraries
from infralens.sessions import imported_plugins

# Imported by every judge: pytest and the plugins its arguments name (see batch.judge_args).
JUDGE_MODULES = ("pytest", "pytest_timeout", "infralens.plugin", "infralens.grading.judging", "infralens.grading.remote")


def modules_to_preload(repo_root: Path) -> tuple[str, ...]:
    """What the judges of ``repo_root`` import: :data:`JUDGE_MODULES`, then the heavy libraries its
    checks and references import (:func:`~infralens.grading.remote.heavy_libraries`: files are only
    parsed, never run). A synthetic lab that needs no torch gets no torch."""
    return JUDGE_MODULES + heavy_libraries(repo_root / "checks", repo_root / "solutions")


class JudgeServerError(RuntimeError):
    """The forkserver could not start or stopped answering; the message says what it printed."""


class Judges:
    """The forkserver of one batch, in ``repo_root`` with environment ``env``, ``preload`` imported::

        with Judges(repo_root, env, preload) as judges:
            code, output = judges.run(pytest_args, output_file, seconds)

    Thread-safe: the batch's worker threads start and wait for judges concurrently.
    """

    def __init__(self, repo_root: Path, env: dict[str, str], preload: tuple[str, ...]):
        self._repo_root, self._env, self._preload = Path(repo_root), env, preload
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, queue.Queue] = {}
        self._stderr_lock = threading.Lock()
        self._last_words: str | None = None

    def __enter__(self) -> "Judges":
        command = [sys.executable, "-B", "-m", "infralens.grading.judges", json.dumps(self._preload)]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: nothing it prints can ever block it
        self._process = subprocess.Popen(
            command, cwd=self._repo_root, env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True,
        )
        ready = queue.Queue()
        self._waiting[-1] = ready
        self._reader = threading.Thread(target=self._read_replies, name="infralens-judges", daemon=True)
        self._reader.start()
        try:
            hello = ready.get(timeout=STARTUP_TIMEOUT_SECONDS)
        except queue.Empty:
            hello = None
        if not hello or not hello.get("ready"):
            try:
                self._process.wait(timeout=5)  # a forkserver whose import failed is exiting
            except subprocess.TimeoutExpired:
                pass
            why = self._stderr_tail()
            self.__exit__(None, None, None)
            raise JudgeServerError(f"the judging forkserver did not start: {why}")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.stdin.close()  # the forkserver kills any judge still running and exits
        except OSError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait()
        self._reader.join(timeout=30)  # it has read the last reply: the pipe is at its end
        process.stdout.close()
        self._stderr_tail()  # kept: a judge's thread may still ask why the forkserver stopped
        with self._stderr_lock:
            self._stderr.close()

    def run(self, args: list[str], output: Path, seconds: float) -> tuple[int | None, str]:
        """Run ``pytest *args`` as a judge; past ``seconds`` kill its process group and return ``(None, "")``.

        Otherwise ``(exit code, what it printed)``. Any process left in its group is killed either way.
        """
        replies: queue.Queue = queue.Queue()
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            self._waiting[request_id] = replies
            try:
                self._process.stdin.write(json.dumps({"id": request_id, "args": args, "output": str(output)}).encode() + b"\n")
                self._process.stdin.flush()
            except (OSError, ValueError) as error:
                raise JudgeServerError(f"the judging forkserver is gone ({error}): {self._stderr_tail()}") from None
        try:
            pid = self._reply(replies)["pid"]
            try:
                code: int | None = self._reply(replies, seconds)["exit"]
            except queue.Empty:
                _kill_group(pid)
                self._reply(replies)  # the forkserver reaps it and says so
                return None, ""
            _kill_group(pid)  # the judge's leftovers, as when a judge of its own ends
        finally:
            with self._lock:
                del self._waiting[request_id]
        return code, output.read_text(encoding="utf-8", errors="replace") if output.is_file() else ""

    def _reply(self, replies: queue.Queue, seconds: float | None = None) -> dict:
        reply = replies.get(timeout=seconds)
        if reply is None:
            raise JudgeServerError(f"the judging forkserver stopped: {self._stderr_tail()}")
        return reply

    def _read_replies(self) -> None:
        try:
            for line in self._process.stdout:
                reply = json.loads(line)
                with self._lock:
                    waiting = self._waiting.get(reply.get("id", -1))
                if waiting is not None:
                    waiting.put(reply)
        finally:
            with self._lock:  # the forkserver is gone (or garbled): nobody waits forever
                for waiting in self._waiting.values():
                    waiting.put(None)

    def _stderr_tail(self) -> str:
        """The last line the forkserver printed (an import error's, say), once it has exited."""
        process = self._process
        if process is None or process.poll() is None:
            return "no message"
        with self._stderr_lock:
            if self._last_words is None:
                self._stderr.seek(0)
                lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
                self._last_words = lines[-1][-2000:] if lines else f"exit {process.returncode}, no message"
            return self._last_words


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


# --- the forkserver --------------------------------------------------------------------------


def serve(preload: list[str], requests_fd: int, reply_fd: int) -> None:
    """Import ``preload``, say ready on ``reply_fd``, then fork a judge per request line read from
    ``requests_fd`` until it closes."""
    for name in preload:
        importlib.import_module(name)
    sys.stdout.flush()  # nothing an import printed may reach a judge's output
    running: dict[int, tuple[int, int]] = {}  # pidfd -> (request id, pid)
    pending = b""

    def reply(message: dict) -> None:
        os.write(reply_fd, json.dumps(message).encode() + b"\n")

    reply({"ready": True})
    while True:
        readable, _, _ = select.select([requests_fd, *running], [], [])
        for source in readable:
            if source != requests_fd:
                request_id, pid = running.pop(source)
                _, status = os.waitpid(pid, 0)
                os.close(source)
                reply({"id": request_id, "exit": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(requests_fd, 1 << 16)
            if not chunk:
                for pidfd, (_, pid) in running.items():
                    _kill_group(pid)
                    os.waitpid(pid, 0)
                    os.close(pidfd)
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                request = json.loads(line)
                pid = _fork_judge(request["args"], Path(request["output"]), [reply_fd, requests_fd, *running])
                running[os.pidfd_open(pid)] = (request["id"], pid)
                reply({"id": request["id"], "pid": pid})


def _fork_judge(args: list[str], output: Path, inherited: list[int]) -> int:
    """Fork a judge running ``pytest *args`` with its output in ``output``; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 70  # a judge that fails before pytest reports is a software error
    try:
        os.setsid()
        for fd in inherited:
            os.close(fd)
        stdin = os.open(os.devnull, os.O_RDONLY)
        sink = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(stdin, 0)
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        os.close(stdin)
        os.close(sink)
        sys.argv = [sys.argv[0], *args]
        import pytest

        code = int(pytest.main(args, plugins=imported_plugins(args)))
    except BaseException:  # noqa: BLE001 - whatever happens, the judge never returns into the forkserver
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> int:
    """``python -B -m infralens.grading.judges '["pytest", ...]'``: the forkserver (started by :class:`Judges`)."""
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # whatever an import prints goes to stderr, never into the replies
    serve(json.loads(sys.argv[1]), 0, reply_fd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
