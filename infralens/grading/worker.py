"""The learner's side of isolated grading: a process that imports learner code and runs it on request.

Started by :class:`infralens.grading.remote.Worker` as ``python -I -c BOOTSTRAP TOOLING_DIR CODE_ROOT IN_FD OUT_FD``
inside a scratch copy of the submission, with resource limits and (when started as root) an
unprivileged user. It answers one request at a time on the protocol pipes; whatever learner code
prints goes to its stdout/stderr, which the judge captures and truncates. Everything the worker
sends back is data under :mod:`infralens.grading.wire`, or a handle to an object that stays here.
"""

from __future__ import annotations

import linecache
import os
import signal
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from infralens.grading import wire
from infralens.loader import LabCode, LabCodeBroken, LabCodeMissing

BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from infralens.grading.worker import main; main(sys.argv[2:])"
MESSAGE_CHARS = 4000


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
        return wire.Handle(self.ids[key], type(value).__name__, isinstance(value, (type, ModuleType)))

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

    def error(self, error: BaseException) -> dict:
        root = str(self.code_root.resolve())
        frames = []
        for frame, line in traceback.walk_tb(error.__traceback__):
            filename = frame.f_code.co_filename
            path = str(Path(filename).resolve()) if filename and not filename.startswith("<") else ""
            if path.startswith(root + os.sep):
                code = frame.f_code
                source = linecache.getline(filename, line).strip()
                frames.append({"file": path[len(root) + 1 :], "line": line, "function": getattr(code, "co_qualname", code.co_name), "source": source[:200]})
        try:
            message = str(error)[:MESSAGE_CHARS]
        except BaseException:  # a learner exception whose __str__ itself fails
            message = f"<{type(error).__name__} whose message could not be read>"
        kind = type(error)
        return {"type": kind.__name__, "builtin": kind.__module__ == "builtins", "message": message, "frames": frames}


def main(argv: list[str]) -> None:
    code_root, in_fd, out_fd = Path(argv[0]), int(argv[1]), int(argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a huge print fails with an error instead of killing us
    requests, replies = os.fdopen(in_fd, "rb"), os.fdopen(out_fd, "wb")
    import numpy  # noqa: F401  the heavy libraries load before the hello, on the judge's clock
    import torch  # noqa: F401

    session = Session(code_root)
    os.chdir(code_root)
    wire.write_message(replies, {"ready": True}, [])  # imports done: from here on, time is the learner's
    while True:
        try:
            header, frames = wire.read_message(requests)
        except EOFError:
            return
        reply_frames: list[bytes] = []
        try:
            result = session.handle(header, frames)
            reply = {"value": wire.encode(result, reply_frames, session.as_handle)}
        except (LabCodeMissing, LabCodeBroken) as error:
            reply = {"error": {"type": type(error).__name__, "builtin": False, "message": str(error), "frames": []}}
        except BaseException as error:  # learner code may raise anything, SystemExit included
            reply_frames = []
            reply = {"error": session.error(error)}
        wire.write_message(replies, reply, reply_frames)
