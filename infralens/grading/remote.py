"""The judge's side of isolated grading: learner code runs in a worker process, never here.

:class:`RemoteLabCode` has the same face as :class:`infralens.loader.LabCode` (``lab.module_name``),
so checks run unchanged. Each attribute read or call on learner objects becomes a request to the
:class:`Worker`; results come back as plain data (see :mod:`infralens.grading.wire`) or as
:class:`RemoteObject` handles. Handles compare by identity in the worker, never by learner
``__eq__``, so learner code cannot make a comparison in the judge come out true.

The worker runs in the bubblewrap sandbox (:mod:`infralens.grading.sandbox`) where one is
available, else with process limits only. Every request carries an id that its reply must echo.
A call that runs past the per-call limit is interrupted in the worker and fails as
:class:`LearnerTimeout`, naming the learner's innermost frame; a worker that ignores that, dies
(``os._exit``, a segfault, the memory limit), or uses up the submission's time budget fails that
check with a clear reason. After any missed deadline the worker is killed, and the next request
starts a fresh one: no reply is ever read for the wrong request.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from infralens.grading import wire
from infralens.loader import LabCodeBroken, LabCodeMissing
from infralens.grading.worker import BOOTSTRAP

STARTUP_TIMEOUT_SECONDS = 120  # starting Python and importing torch, before any learner code runs
KILL_GRACE_SECONDS = 2.0  # after the per-call alarm, how long the judge waits before killing the worker
REPLY_LIMIT_BYTES = 256 << 20  # the most one reply may make the judge hold
OUTPUT_TAIL_CHARS = 2000
ISOLATION_MODES = ("auto", "sandbox", "processes")
RAISED_AS_IS = {
    "ArithmeticError", "AttributeError", "IndexError", "KeyError", "LookupError", "NameError", "NotImplementedError",
    "OverflowError", "RecursionError", "RuntimeError", "TypeError", "UnboundLocalError", "ValueError", "ZeroDivisionError",
}


class LearnerProcessError(Exception):
    """The learner's process misbehaved: it timed out, died, or raised something that is not re-raised as is."""


class LearnerError(LearnerProcessError):
    """An exception raised by learner code that the judge does not re-raise as its own type (e.g. SystemExit)."""


class LearnerTimeout(LearnerProcessError):
    """A call into learner code ran past its time limit; ``learner_frames`` ends with where it was."""


HEAVY_LIBRARIES = ("numpy", "torch")  # imported by the worker before its hello, on the judge's clock


def heavy_libraries(*code_roots: Path) -> tuple[str, ...]:
    """The :data:`HEAVY_LIBRARIES` imported by the lab modules under ``code_roots`` (folders of
    ``labNN_*`` folders: the starters, and the submission's own code).

    The worker imports these before it says it is ready, so the learner's time limits never pay for
    them; lab code that needs neither (a small synthetic lab) starts without them. Files are only
    parsed, never run. One that Python cannot compile (a syntax error, a bad encoding, a NUL byte)
    imports nothing: its import fails before any statement runs. One that cannot be read counts as
    importing everything.
    """
    imported: set[str] = set()
    for root in code_roots:
        for module in Path(root).glob("lab*/*.py"):
            try:
                tree = ast.parse(module.read_bytes())  # bytes: a coding declaration is honoured, as import does
            except OSError:
                return HEAVY_LIBRARIES
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    return tuple(name for name in HEAVY_LIBRARIES if name in imported)


def worker_preload(repo_root: Path, code_root: Path) -> tuple[str, ...]:
    """What a worker running ``code_root`` for the checks of ``repo_root`` imports before its hello:
    the heavy libraries of the checkout's starters (what the checks hand learner code: tensors need
    torch in the worker even where a submission never imports it) and of the code under test."""
    return heavy_libraries(Path(repo_root) / "exercises", code_root)


class Worker:
    """One learner process for one submission: started on first use, replaced after a crash or time-out.

    ``isolation`` is ``"sandbox"`` (bubblewrap, refused where unavailable), ``"processes"`` (process
    limits only; a root grader's worker still drops to its own uid) or ``"auto"`` (the sandbox where
    available). ``budget_seconds`` bounds all the submission's calls together, from construction.
    """

    def __init__(
        self,
        code_root: Path,
        display_root: str,
        call_timeout: float = 10.0,
        memory_bytes: int = 4 << 30,
        *,
        isolation: str = "auto",
        budget_seconds: float | None = None,
        preload: tuple[str, ...] = HEAVY_LIBRARIES,
    ):
        from infralens.grading import sandbox  # imported here: the learner's own runs never pay for it

        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION_MODES)}, got {isolation!r}")
        self.code_root = Path(code_root)
        self.display_root = display_root
        self.call_timeout = call_timeout
        self.budget_seconds = budget_seconds
        self.preload = preload
        self.deadline = time.monotonic() + budget_seconds if budget_seconds else None
        self.limits = sandbox.Limits(memory_bytes=memory_bytes, cpu_seconds=int(budget_seconds or 600) + 1)
        found = sandbox.availability()
        if isolation == "sandbox" and not found.available:
            raise LearnerProcessError(f"no sandbox for learner code: {found.reason}. To get one: {sandbox.HOW_TO_GET_ONE}")
        self.bwrap = found.bwrap if isolation != "processes" and found.available else None
        self.uid = sandbox.worker_uid() if self.bwrap or sandbox.usable_by_others(*sandbox.interpreter_paths()) else None
        self.generation = 0
        self.request_id = 0
        self.process: subprocess.Popen | None = None
        self.scratch: tempfile.TemporaryDirectory | None = None

    @property
    def isolation(self) -> str:
        """What actually confines learner code, in words (recorded in grading outputs)."""
        if self.bwrap:
            return "sandbox (bubblewrap)"
        return f"process limits only, as uid {self.uid}" if self.uid is not None else "process limits only, as the grader's own user"

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        from infralens.grading import sandbox

        self.close()
        self.scratch = tempfile.TemporaryDirectory(prefix="infralens-worker-")
        scratch = Path(self.scratch.name)
        self.output = open(scratch / "output.txt", "w+b")
        request_read, self._requests = os.pipe()
        self._replies, reply_write = os.pipe()
        # The tooling is copied readable by all: the grader's own may be locked away (mode 0700).
        tooling = scratch / "tooling" / "infralens"
        shutil.copytree(Path(__file__).resolve().parent.parent, tooling, ignore=shutil.ignore_patterns("__pycache__"), copy_function=_copy_readable)
        _open_folders(scratch / "tooling")
        config = {
            "site": sandbox.site_folders(), "in": request_read, "out": reply_write, "uid": self.uid, "preload": list(self.preload),
            "rlimits": self.limits.rlimits(count_processes=bool(self.bwrap) or self.uid is not None),
        }
        worker = [sys.executable, "-I", "-S", "-B", "-c", BOOTSTRAP]
        if self.bwrap:
            # Tooling and lab code are mounted read-only: nothing the learner can change.
            config.update(tooling=sandbox.TOOLING_MOUNT, code=sandbox.CODE_MOUNT)
            argv, cwd, env = [*sandbox.command(self.bwrap, self.code_root, tooling, self.limits), *worker, json.dumps(config)], None, {}
        else:
            code = scratch / "code"
            shutil.copytree(self.code_root, code, ignore=shutil.ignore_patterns("__pycache__", ".git"), symlinks=True)
            if self.uid is not None:
                _give_to(scratch, self.uid)
            config.update(tooling=str(scratch / "tooling"), code=str(code))
            argv, cwd = [*worker, json.dumps(config)], code
            env = {"PATH": os.defpath, "HOME": str(code), "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.output, stderr=self.output,
            pass_fds=(request_read, reply_write), start_new_session=True,
        )
        os.close(request_read)
        os.close(reply_write)
        self._writer = os.fdopen(self._requests, "wb")
        self._reader = _DeadlineReader(self._replies)
        self._ready = False

    def _await_ready(self) -> None:
        """Wait for the worker's hello: Python started and torch imported, before any learner code."""
        self._reader.set_deadline(min(STARTUP_TIMEOUT_SECONDS, self._budget_left()))
        try:
            hello, _frames = wire.read_message(self._reader)
        except (TimeoutError, EOFError, wire.WireError) as error:
            tail = self._output_tail()
            self.close()
            raise LearnerProcessError(f"the learner process could not start ({type(error).__name__}){tail}") from None
        if hello != {"ready": True}:
            self.close()
            raise LearnerProcessError("the learner process did not start properly")
        self._ready = True

    def close(self) -> None:
        """Kill the worker and everything it started; every handle into it is stale from now on."""
        if self.process is not None:
            self.generation += 1
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # bwrap's PID namespace takes its processes along
            except (ProcessLookupError, PermissionError):
                pass  # already gone
            self.process.wait()
            if not self.bwrap and self.uid is not None:
                _kill_everything_of(self.uid)  # no PID namespace: a daemon it left must not outlive it
            try:
                self._writer.close()
            except OSError:  # the worker is gone; unsent bytes do not matter
                pass
            os.close(self._replies)
            self.output.close()
            self.process = None
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None

    # --- requests -------------------------------------------------------------------------------

    def handle_of(self, value: Any) -> wire.Handle:
        """The handle of a learner object being passed back to this worker; anything else cannot cross."""
        if isinstance(value, RemoteObject) and value._worker is self and value._generation == self.generation:
            return value._handle
        if isinstance(value, RemoteObject):
            raise LearnerProcessError("this object came from a learner process that has since been restarted")
        raise wire.WireError(f"cannot send a {type(value).__name__} to the learner's process: only data (numbers, strings, tensors, arrays, containers) crosses")

    def _budget_left(self) -> float:
        if self.deadline is None:
            return float("inf")
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.close()
            raise LearnerProcessError(
                f"this submission used up its time budget of {self.budget_seconds:g} s, so this check and the remaining ones did not run: "
                "look for calls that are far slower than they need to be"
            )
        return left

    def request(self, header: dict, frames: list[bytes], what: str) -> Any:
        """Send one request; return the decoded value or raise what the learner's code raised."""
        budget_left = self._budget_left()
        if self.process is None:
            self.start()
        if not self._ready:
            self._await_ready()
        self.request_id += 1
        header = {**header, "id": self.request_id, "timeout": self.call_timeout}
        budget_bound = budget_left < self.call_timeout + KILL_GRACE_SECONDS
        try:
            wire.write_message(self._writer, header, frames)
            self._reader.set_deadline(min(self.call_timeout + KILL_GRACE_SECONDS, budget_left))
            reply, reply_frames = wire.read_message(self._reader, REPLY_LIMIT_BYTES)
        except TimeoutError:
            self.close()
            if budget_bound:
                self._budget_left()  # raises: the budget is what ran out
            raise LearnerTimeout(
                f"your code did not return within {self.call_timeout:g} s ({what}) and did not stop when interrupted: "
                "an infinite loop that catches every exception, or a single operation far too slow"
            ) from None
        except (EOFError, BrokenPipeError):
            code = self.process.wait() if self.process else None
            if self.bwrap and code is not None and code > 128:
                code = 128 - code  # bwrap reports a child killed by signal N as exit 128 + N
            tail = self._output_tail()
            self.close()
            raise LearnerProcessError(f"your code ended its process ({what}): {_exit_reason(code)}{tail}") from None
        except wire.WireError as error:
            self.close()
            raise LearnerProcessError(f"your code's process sent something that is not data ({what}): {error}") from None
        except BaseException:  # e.g. the per-check timeout fired while waiting: never read this reply later
            self.close()
            raise
        if type(reply) is not dict or reply.get("id") != self.request_id:
            self.close()
            raise LearnerProcessError(f"your code's process sent a malformed reply ({what})")
        if "error" in reply:
            error = _rebuild_error(reply["error"], self.display_root, self.call_timeout, what)
            if isinstance(error, LearnerTimeout):
                self.close()  # interrupted learner code may have left its state half-changed: start afresh
            raise error
        return wire.decode(reply.get("value"), reply_frames, lambda handle: RemoteObject(self, handle, self.generation))

    def _output_tail(self) -> str:
        try:
            self.output.seek(0, os.SEEK_END)
            size = self.output.tell()
            self.output.seek(max(0, size - OUTPUT_TAIL_CHARS))
            text = self.output.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n  last output: {text[-OUTPUT_TAIL_CHARS:]}" if text else ""


def _copy_readable(source: str, target: str) -> None:
    shutil.copyfile(source, target)
    os.chmod(target, 0o644)


def _open_folders(top: Path) -> None:
    for folder, _dirs, _files in os.walk(top):
        os.chmod(folder, 0o755)


def _give_to(scratch: Path, uid: int) -> None:
    for folder, _dirs, files in os.walk(scratch):
        os.chown(folder, uid, uid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, uid)


def _kill_everything_of(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a worker's own uid): a child becomes it and signals -1."""
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child only
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except the caller
        finally:
            os._exit(0)
    os.waitpid(child, 0)


class _DeadlineReader:
    """Buffered ``read(n)`` on a pipe that raises ``TimeoutError`` past the current deadline."""

    def __init__(self, fd: int):
        self.fd, self.buffer, self.deadline = fd, bytearray(), 0.0

    def set_deadline(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def read(self, size: int) -> bytes:
        if not self.buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise TimeoutError
            self.buffer += os.read(self.fd, 1 << 20)  # empty at EOF: read_message sees that as EOFError
        chunk = bytes(self.buffer[:size])
        del self.buffer[:size]
        return chunk


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = {"SIGSEGV": " (a segmentation fault)", "SIGKILL": " (killed: often the memory limit)", "SIGXCPU": " (its CPU time limit)"}.get(name, "")
        return f"killed by {name}{hint}"
    return f"exit code {code} (os._exit or sys.exit at import time?)"


def _rebuild_error(error: Any, display_root: str, call_timeout: float, what: str) -> BaseException:
    if type(error) is not dict:
        return LearnerProcessError("your code's process sent a malformed error")
    kind, message = wire.clean_text(str(error.get("type", "Exception"))[:100]), wire.clean_text(str(error.get("message", "")))
    frames = error.get("frames") if type(error.get("frames")) is list else []
    learner_frames = [
        (wire.clean_text(str(f.get("function", "?"))[:200]), f"{display_root}/{wire.clean_text(str(f.get('file', '?'))[:300])}", f["line"], wire.clean_text(str(f.get("source", ""))[:200]))
        for f in frames
        if type(f) is dict and type(f.get("line", 0)) is int
    ]
    if kind == "LabCodeMissing":
        return LabCodeMissing(message)
    if kind == "LabCodeBroken":
        return LabCodeBroken(message)
    if kind == "LearnerTimeout":
        function, file, line, _source = learner_frames[-1] if learner_frames else (None, "", 0, "")
        where = f"it was still running `{function}` at {file}:{line}" if function else what
        rebuilt: BaseException = LearnerTimeout(f"your code did not return within {call_timeout:g} s ({where}): an infinite loop, or far too slow")
    elif error.get("builtin") is True and kind in RAISED_AS_IS:
        rebuilt = getattr(builtins, kind)(message)
    elif kind == "SystemExit":
        rebuilt = LearnerError(f"your code called sys.exit({message})")
    else:
        rebuilt = LearnerError(f"{kind}: {message}")
    rebuilt.learner_frames = learner_frames
    return rebuilt


class RemoteObject:
    """An object that lives in the learner's process. Attribute reads and calls are requests;
    equality and hashing are identity in the worker, so learner code cannot fake a match."""

    __slots__ = ("_worker", "_handle", "_generation", "_static_attributes")

    def __init__(self, worker: Worker, handle: wire.Handle, generation: int):
        object.__setattr__(self, "_worker", worker)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_generation", generation)
        object.__setattr__(self, "_static_attributes", {})

    def _ask(self, op: str, what: str, **fields: Any) -> Any:
        if self._generation != self._worker.generation:
            raise LearnerProcessError(f"{what}: this object came from a learner process that has since been restarted")
        frames: list[bytes] = []
        header = {"op": op, "target": wire.encode(self._handle, frames)}
        for key, value in fields.items():
            header[key] = wire.encode(value, frames, self._worker.handle_of) if key in ("args", "kwargs", "key") else value
        return self._worker.request(header, frames, what)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # Python's own protocol probes stay on this side
        if name in self._static_attributes:
            return self._static_attributes[name]
        value = self._ask("getattr", f"reading `{self._handle.label}.{name}`", name=name)
        if self._handle.static and isinstance(value, RemoteObject):
            # A class's or module's functions, classes and enum members: one round trip each.
            self._static_attributes[name] = value
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", f"calling `{self._handle.label}`", args=list(args), kwargs=dict(kwargs))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteObject) and (other._generation, other._handle.id) == (self._generation, self._handle.id)

    def __hash__(self) -> int:
        return hash((self._generation, self._handle.id))

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        try:
            return _text(self._ask("repr", "repr"))
        except Exception:
            return f"<{self._handle.type_name} from your code>"

    def __str__(self) -> str:
        return _text(self._ask("str", "str"))

    def __format__(self, spec: str) -> str:
        return _text(self._ask("format", "format", spec=spec))

    def __len__(self) -> int:
        value = self._ask("len", f"len() of a {self._handle.type_name}")
        if type(value) is not int:
            raise TypeError("len() of a learner object did not return an int")
        return value

    def __iter__(self):
        items = self._ask("list", f"iterating a {self._handle.type_name}")
        return iter(items if type(items) is list else [])

    def __getitem__(self, key: Any) -> Any:
        return self._ask("getitem", f"indexing a {self._handle.type_name}", key=key)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("objects from your code are read-only here")

    @property
    def __dict__(self) -> Any:  # dataclasses' fields, as data
        return self._ask("getattr", f"reading `{self._handle.label}.__dict__`", name="__dict__")


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError("expected text from the learner's process")
    return value


class RemoteModule:
    """A learner module in the worker, re-imported transparently after the worker restarts."""

    def __init__(self, worker: Worker, lab_folder: str, name: str):
        self._worker, self._lab_folder, self._name = worker, lab_folder, name
        self._module: RemoteObject | None = None

    def _resolve(self) -> RemoteObject:
        if self._module is None or self._module._generation != self._worker.generation:
            header = {"op": "import", "lab": self._lab_folder, "module": self._name, "display_root": self._worker.display_root}
            self._module = self._worker.request(header, [], f"importing {self._lab_folder}/{self._name}.py")
        return self._module

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._resolve(), name)


class RemoteLabCode:
    """Same use as :class:`infralens.loader.LabCode`: ``code.quantization_plan`` is the learner's module."""

    def __init__(self, worker: Worker, lab_folder: str):
        self._worker, self._lab_folder = worker, lab_folder
        self._modules: dict[str, RemoteModule] = {}

    def __getattr__(self, module: str) -> RemoteModule:
        if module.startswith("_"):
            raise AttributeError(module)
        if module not in self._modules:
            self._modules[module] = RemoteModule(self._worker, self._lab_folder, module)
        return self._modules[module]
