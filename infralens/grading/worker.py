"""The learner's side of isolated grading: a process that imports learner code and runs it on request.

Started by :class:`infralens.grading.remote.Worker` as ``python -I -S -B -c BOOTSTRAP CONFIG``, inside
the bubblewrap sandbox (:mod:`infralens.grading.sandbox`) where there is one. ``CONFIG`` is JSON:
the tooling and package folders for ``sys.path``, the code root, the two protocol pipes, the uid
to drop to (a root grader's worker) and the resource limits. Before any learner code is imported,
:func:`main` drops privileges, sets the limits, and imports the heavy libraries; then it says hello
and answers one request at a time. Every reply echoes its request's ``id``.

A request may carry a ``timeout``: an alarm then interrupts learner code that runs longer, and the
reply is a ``LearnerTimeout`` error naming the innermost learner frame. Learner code that ignores
the alarm is killed by the judge (the backstop). Whatever learner code prints goes to the judge's
capture file. Everything sent back is data under :mod:`infralens.grading.wire`, or a handle to an
object that stays here.
"""

from __future__ import annotations

import importlib
import linecache
import os
import signal
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from infralens.grading import wire
from infralens.loader import LabCode, LabCodeBroken, LabCodeMissing

BOOTSTRAP = (
    "import json, sys; config = json.loads(sys.argv[1]); sys.path[:0] = [config['tooling']]; sys.path += config['site']; "
    "from infralens.grading.worker import main; main(config)"
)
MESSAGE_CHARS = 4000


class CallTimedOut(BaseException):
    """Raised inside learner code by the per-call alarm (a ``BaseException``, like ``KeyboardInterrupt``)."""


class Session:
    """The objects handed out to the judge, by handle id; the same object always gets the same id."""

    def __init__(self, code_root: Path):
        self.code_root = code_root
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}

    def as_handle(self, value: Any) -> wire.Handle:
        key = id(value)
        if key not in self.ids:
            self.ids[key] = len(self.objects) + 1
            self.objects[self.ids[key]] = value
        name = getattr(value, "__qualname__", None) if callable(value) or isinstance(value, ModuleType) else None
        if isinstance(value, ModuleType):
            name = value.__name__.rpartition(".")[2]
        return wire.Handle(self.ids[key], type(value).__name__, isinstance(value, (type, ModuleType)), name if type(name) is str else "")

    def resolve(self, handle: wire.Handle) -> Any:
        try:
            return self.objects[handle.id]
        except KeyError:
            raise LookupError(f"no object with handle {handle.id} in this process") from None

    def handle(self, header: dict, frames: list[bytes]) -> Any:
        op = header.get("op")
        decode = lambda data: wire.decode(data, frames, self.resolve)  # noqa: E731
        if op == "import":
            return LabCode(self.code_root, str(header["lab"]), str(header["display_root"])).module(str(header["module"]))
        target = decode(header["target"])
        if op == "getattr":
            return getattr(target, str(header["name"]))
        if op == "call":
            return target(*decode(header["args"]), **decode(header["kwargs"]))
        if op == "repr":
            return repr(target)
        if op == "str":
            return str(target)
        if op == "format":
            return format(target, str(header["spec"]))
        if op == "len":
            return len(target)
        if op == "list":
            return list(target)
        if op == "getitem":
            return target[decode(header["key"])]
        raise ValueError(f"unknown operation {op!r}")

    def frames(self, error: BaseException) -> list[dict]:
        """The traceback's frames in learner files (relative to the code root), innermost last."""
        root = str(self.code_root.resolve())
        frames = []
        for frame, line in traceback.walk_tb(error.__traceback__):
            filename = frame.f_code.co_filename
            path = str(Path(filename).resolve()) if filename and not filename.startswith("<") else ""
            if path.startswith(root + os.sep):
                code = frame.f_code
                source = linecache.getline(filename, line).strip()
                frames.append({"file": path[len(root) + 1 :], "line": line, "function": getattr(code, "co_qualname", code.co_name), "source": source[:200]})
        return frames

    def error(self, error: BaseException) -> dict:
        if isinstance(error, CallTimedOut):
            return {"type": "LearnerTimeout", "builtin": False, "message": "", "frames": self.frames(error)}
        try:
            message = str(error)[:MESSAGE_CHARS]
        except BaseException:  # a learner exception whose __str__ itself fails
            message = f"<{type(error).__name__} whose message could not be read>"
        kind = type(error)
        return {"type": kind.__name__, "builtin": kind.__module__ == "builtins", "message": message, "frames": self.frames(error)}


def drop_privileges(uid: int | None) -> None:
    """Become ``uid`` (with no supplementary groups) when started as root; refuse to go on otherwise."""
    if uid is None:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != uid:
        raise SystemExit(f"could not drop privileges to uid {uid}")


def set_limits(rlimits: dict[str, int]) -> None:
    """Apply ``{"RLIMIT_AS": bytes, ...}`` as soft and hard limits (CPU: SIGXCPU first, SIGKILL 5 s later)."""
    import resource

    for name, value in rlimits.items():
        hard = value + 5 if name == "RLIMIT_CPU" else value
        resource.setrlimit(getattr(resource, name), (value, hard))


def _alarm(signum: int, frame: Any) -> None:
    raise CallTimedOut


def main(config: dict) -> None:
    drop_privileges(config.get("uid"))
    set_limits(config["rlimits"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a huge print fails with an error instead of killing us
    signal.signal(signal.SIGALRM, _alarm)
    code_root = Path(config["code"])
    requests, replies = os.fdopen(config["in"], "rb"), os.fdopen(config["out"], "wb")
    for library in config["preload"]:  # the heavy libraries load before the hello, on the judge's clock
        importlib.import_module(library)

    session = Session(code_root)
    os.chdir(code_root)
    wire.write_message(replies, {"ready": True}, [])  # imports done: from here on, time is the learner's
    while True:
        try:
            header, frames = wire.read_message(requests)
        except EOFError:
            return
        request_id = header.get("id") if type(header) is dict else None
        timeout = header.get("timeout") if type(header) is dict else None
        reply_frames: list[bytes] = []
        try:
            if type(timeout) in (int, float) and timeout > 0:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                result = session.handle(header, frames)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            reply = {"id": request_id, "value": wire.encode(result, reply_frames, session.as_handle)}
        except (LabCodeMissing, LabCodeBroken) as error:
            reply = {"id": request_id, "error": {"type": type(error).__name__, "builtin": False, "message": str(error), "frames": []}}
        except BaseException as error:  # learner code may raise anything, SystemExit included
            reply_frames = []
            reply = {"id": request_id, "error": session.error(error)}
        wire.write_message(replies, reply, reply_frames)
