"""The judge's side of isolated grading: learner code runs in a worker process, never here.

:class:`RemoteLabCode` has the same face as :class:`infralens.loader.LabCode` (``lab.module_name``),
so checks run unchanged. Each attribute read or call on learner objects becomes a request to the
:class:`Worker`; results come back as plain data (see :mod:`infralens.grading.wire`) or as
:class:`RemoteObject` handles. Handles compare by identity in the worker, never by learner
``__eq__``, so learner code cannot make a comparison in the judge come out true.

A call that does not return within the time limit, or a worker that dies (``os._exit``, a
segfault, the memory limit), fails that one check with a clear reason; the next call starts a
fresh worker.
"""

from __future__ import annotations

import builtins
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

NOBODY = 65534
STARTUP_TIMEOUT_SECONDS = 120  # starting Python and importing torch, before any learner code runs
OUTPUT_TAIL_CHARS = 2000
RAISED_AS_IS = {
    "ArithmeticError", "AttributeError", "IndexError", "KeyError", "LookupError", "NameError", "NotImplementedError",
    "OverflowError", "RecursionError", "RuntimeError", "TypeError", "UnboundLocalError", "ValueError", "ZeroDivisionError",
}


class LearnerProcessError(Exception):
    """The learner's process misbehaved: it timed out, died, or raised something that is not re-raised as is."""


class LearnerError(LearnerProcessError):
    """An exception raised by learner code that the judge does not re-raise as its own type (e.g. SystemExit)."""


class Worker:
    """One learner process for one submission: started on first use, restarted after a crash or time-out."""

    def __init__(self, code_root: Path, display_root: str, call_timeout: float = 10.0, memory_bytes: int = 4 << 30):
        self.code_root = Path(code_root)
        self.display_root = display_root
        self.call_timeout = call_timeout
        self.memory_bytes = memory_bytes
        self.generation = 0
        self.process: subprocess.Popen | None = None
        self.scratch: tempfile.TemporaryDirectory | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.close()
        self._as_nobody = self._can_drop_privileges()  # decided here: the child may only use the answer
        self.scratch = tempfile.TemporaryDirectory(prefix="infralens-worker-")
        scratch = Path(self.scratch.name)
        shutil.copytree(Path(__file__).resolve().parent.parent, scratch / "tooling" / "infralens", ignore=shutil.ignore_patterns("__pycache__"))
        code = scratch / "code"
        shutil.copytree(self.code_root, code, ignore=shutil.ignore_patterns("__pycache__", ".git"), symlinks=True)
        self._open_to_worker_user(scratch)
        self.output = open(scratch / "output.txt", "w+b")
        request_read, self._requests = os.pipe()
        self._replies, reply_write = os.pipe()
        env = {"PATH": os.defpath, "HOME": str(code), "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", BOOTSTRAP, str(scratch / "tooling"), str(code), str(request_read), str(reply_write)],
            cwd=code,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=self.output,
            pass_fds=(request_read, reply_write),
            preexec_fn=self._limits,
        )
        os.close(request_read)
        os.close(reply_write)
        self._writer = os.fdopen(self._requests, "wb")
        self._reader = _DeadlineReader(self._replies)
        self._ready = False

    def _await_ready(self) -> None:
        """Wait for the worker's hello: Python started and torch imported, before any learner code."""
        self._reader.set_deadline(STARTUP_TIMEOUT_SECONDS)
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

    def _limits(self) -> None:
        """Runs in the child before Python starts: own process group, resource limits, no privileges."""
        import resource  # POSIX only, like isolated grading itself; learners on any OS never get here

        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self._as_nobody:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

    @staticmethod
    def _can_drop_privileges() -> bool:
        """Run the worker as ``nobody``: possible when we are root and ``nobody`` can use this Python."""
        if os.geteuid() != 0:
            return False
        import numpy
        import torch

        return _usable_by_others(Path(sys.executable).resolve(), Path(numpy.__file__).parent, Path(torch.__file__).parent)

    def _open_to_worker_user(self, scratch: Path) -> None:
        if not self._as_nobody:
            return
        for folder, dirs, files in os.walk(scratch):
            os.chown(folder, NOBODY, NOBODY)
            for name in files:
                os.chown(os.path.join(folder, name), NOBODY, NOBODY)

    def close(self) -> None:
        if self.process is not None:
            self.generation += 1  # every handle into this process is stale from now on
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
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

    def request(self, header: dict, frames: list[bytes], what: str) -> Any:
        """Send one request; return the decoded value or raise what the learner's code raised."""
        if self.process is None:
            self.start()
        if not self._ready:
            self._await_ready()
        try:
            wire.write_message(self._writer, header, frames)
            self._reader.set_deadline(self.call_timeout)
            reply, reply_frames = wire.read_message(self._reader)
        except TimeoutError:
            self.close()
            raise LearnerProcessError(f"your code did not return within {self.call_timeout:g} s ({what}): an infinite loop, or far too slow") from None
        except (EOFError, BrokenPipeError):
            code = self.process.wait() if self.process else None
            tail = self._output_tail()
            self.close()
            raise LearnerProcessError(f"your code ended its process ({what}): {_exit_reason(code)}{tail}") from None
        except wire.WireError as error:
            self.close()
            raise LearnerProcessError(f"your code's process sent something that is not data ({what}): {error}") from None
        if type(reply) is not dict:
            self.close()
            raise LearnerProcessError(f"your code's process sent a malformed reply ({what})")
        if "error" in reply:
            raise _rebuild_error(reply["error"], self.display_root)
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


def _usable_by_others(*paths: Path) -> bool:
    """True when every folder on the way to each path is searchable and the path readable by other users."""
    for path in paths:
        for folder in path.parents:
            if not folder.stat().st_mode & 0o001:
                return False
        if not path.stat().st_mode & 0o004:
            return False
    return True


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
        hint = {"SIGSEGV": " (a segmentation fault)", "SIGKILL": " (killed: often the memory limit)"}.get(name, "")
        return f"killed by {name}{hint}"
    return f"exit code {code} (os._exit or sys.exit at import time?)"


def _rebuild_error(error: Any, display_root: str) -> BaseException:
    if type(error) is not dict:
        return LearnerProcessError("your code's process sent a malformed error")
    kind, message = str(error.get("type", "Exception"))[:100], str(error.get("message", ""))
    if kind == "LabCodeMissing":
        return LabCodeMissing(message)
    if kind == "LabCodeBroken":
        return LabCodeBroken(message)
    if error.get("builtin") is True and kind in RAISED_AS_IS:
        rebuilt: BaseException = getattr(builtins, kind)(message)
    elif kind == "SystemExit":
        rebuilt = LearnerError(f"your code called sys.exit({message})")
    else:
        rebuilt = LearnerError(f"{kind}: {message}")
    frames = error.get("frames") if type(error.get("frames")) is list else []
    rebuilt.learner_frames = [
        (str(f.get("function", "?"))[:200], f"{display_root}/{str(f.get('file', '?'))[:300]}", int(f.get("line", 0)), str(f.get("source", ""))[:200])
        for f in frames
        if type(f) is dict and type(f.get("line", 0)) is int
    ]
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
        value = self._ask("getattr", f"reading `{self._handle.type_name}.{name}`", name=name)
        if self._handle.static and isinstance(value, RemoteObject):
            # A class's or module's functions, classes and enum members: one round trip each.
            self._static_attributes[name] = value
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", f"calling `{self._handle.type_name}`", args=list(args), kwargs=dict(kwargs))

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
        return self._ask("getattr", f"reading `{self._handle.type_name}.__dict__`", name="__dict__")


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
