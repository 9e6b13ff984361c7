"""Between the checks and the learner's code: each call runs under a time limit and must return its documented type.

The ``lab`` fixture hands out a lab's modules through :class:`ContractLab`. Reading a function or
class that the lab's *starter* defines at top level gives a wrapper, so every call a check makes

* runs under the per-call limit (``--call-limit``, ini ``infralens_call_limit``). In this process
  a ``SIGALRM`` timer raises inside the learner's code, so the failure names the line it was on
  (:class:`CallTimedOut`); under ``--isolate`` the worker stops the call and reports its frames.
  A function that ran out of time fails at once for the rest of the run: one infinite loop
  costs one limit, not one per check;
* returns its documented type (:class:`ContractError` otherwise): the return annotation of that
  function in ``<repo>/exercises/<lab>/<module>.py``, parsed once. The starter's signatures are
  the spec; the learner's own annotations are never read. See :func:`return_type` for what is
  checked (``-> int`` is exactly an ``int``: not a float, a bool or a numpy integer).

Classes are wrapped for construction only: attribute reads, enum members and iteration go to the
class itself, and the objects they build are the learner's own, usable as data. Calls do not
nest: a learner function calling another is covered by the outer call's limit.
"""

from __future__ import annotations

import _signal
import ast
import signal
import sys
import threading
import time
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable

REPEAT_SECONDS = 0.5  # after the limit, the timer fires again until the call is abandoned (a bare `except:` cannot hold it)
VALUE_CHARS = 60
ARGUMENTS_CHARS = 160


class ContractError(AssertionError):
    """A learner function returned something other than its documented return type."""


class CallTimedOut(AssertionError):
    """A call into learner code did not return within the per-call limit (or timed out earlier in this run)."""


class _OutOfTime(BaseException):
    """Raised inside the learner's code by the timer; a BaseException so ``except Exception`` does not swallow it."""


@dataclass(frozen=True)
class ReturnType:
    """A checkable return annotation: ``text`` as the starter writes it, ``problem(value)`` None when it conforms."""

    text: str
    problem: Callable[[Any], "str | None"]


def kind(value: Any) -> str:
    """``float``, ``numpy.int64``, ``torch.Tensor``: a value's type as a message names it."""
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__name__
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def show(value: Any, limit: int = VALUE_CHARS) -> str:
    """A value in a message: tensors and arrays as shape and dtype, models by name, anything else a capped ``repr``."""
    if hasattr(value, "shape") and hasattr(value, "dtype") and type(value).__module__.split(".")[0] in ("torch", "numpy"):
        if getattr(value, "ndim", 1) == 0:
            return repr(value.item()) if hasattr(value, "item") else repr(value)
        return f"{kind(value)} of shape {tuple(value.shape)}, dtype {value.dtype}"
    if is_dataclass(value) and not isinstance(value, type):
        name = getattr(value, "name", None)
        return f"{type(value).__name__}({name!r}, …)" if isinstance(name, str) else f"{type(value).__name__}(…)"
    try:
        text = repr(value)
    except Exception:  # a learner object whose __repr__ fails still gets named
        text = f"<{kind(value)}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _got(value: Any) -> str:
    return f"{kind(value)} {show(value)}"


def _exact(*types: type) -> Callable[[Any], str | None]:
    return lambda value: None if type(value) in types else _got(value)


def _tensor(value: Any) -> str | None:
    torch = sys.modules.get("torch")
    return None if torch is not None and isinstance(value, torch.Tensor) else _got(value)


SIMPLE = {
    "int": _exact(int),
    "float": _exact(float, int),
    "bool": _exact(bool),
    "str": lambda value: None if isinstance(value, str) else _got(value),
    "None": lambda value: None if value is None else _got(value),
    "list": lambda value: None if isinstance(value, list) else _got(value),
    "List": lambda value: None if isinstance(value, list) else _got(value),
    "dict": lambda value: None if isinstance(value, dict) else _got(value),
    "Dict": lambda value: None if isinstance(value, dict) else _got(value),
}


def return_type(annotation: ast.expr | None, tensor_names: frozenset[str] = frozenset({"torch.Tensor"})) -> ReturnType | None:
    """The check for a starter's return annotation, or None when it is not checked.

    Checked: ``int`` (exactly ``int``), ``float`` (``float`` or ``int``, never ``bool``),
    ``bool``, ``str``, ``None``, a tensor (``torch.Tensor``, or a name the starter imported for it:
    ``tensor_names``), ``X | None`` / ``Optional[X]``, ``tuple[A, B]`` element by element and
    ``tuple[A, ...]``, ``list[X]`` and ``dict[K, V]`` by container type. Anything else
    (dataclasses, the starter's own classes, ``Any``) is not checked.
    """
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # a quoted annotation
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    text = ast.unparse(annotation)
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return ReturnType("None", SIMPLE["None"])
    if text in tensor_names:
        return ReturnType(text, _tensor)
    if isinstance(annotation, ast.Name) and annotation.id in SIMPLE:
        return ReturnType(text, SIMPLE[annotation.id])
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _union(text, [annotation.left, annotation.right], tensor_names)
    if isinstance(annotation, ast.Subscript):
        origin = ast.unparse(annotation.value).removeprefix("typing.")
        items = list(annotation.slice.elts) if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        if origin == "Optional":
            return _union(text, [*items, ast.Constant(None)], tensor_names)
        if origin == "Union":
            return _union(text, items, tensor_names)
        if origin in ("list", "List", "dict", "Dict"):
            return ReturnType(text, SIMPLE[origin])
        if origin in ("tuple", "Tuple"):
            return _tuple(text, items, tensor_names)
    return None


def _union(text: str, members: list[ast.expr], tensor_names: frozenset[str]) -> ReturnType | None:
    checks = [return_type(member, tensor_names) for member in members]
    if any(check is None for check in checks):
        return None  # one unchecked member makes the whole union unchecked

    def problem(value: Any) -> str | None:
        return None if any(check.problem(value) is None for check in checks) else _got(value)

    return ReturnType(text, problem)


def _tuple(text: str, items: list[ast.expr], tensor_names: frozenset[str]) -> ReturnType:
    repeated = len(items) == 2 and isinstance(items[1], ast.Constant) and items[1].value is Ellipsis
    checks = [return_type(item, tensor_names) for item in items[:1 if repeated else None]]

    def problem(value: Any) -> str | None:
        if not isinstance(value, tuple):
            return _got(value)
        if not repeated and len(value) != len(checks):
            return f"a tuple of {len(value)} items {show(value)}"
        for index, item in enumerate(value):
            check = checks[0] if repeated else checks[index]
            issue = check.problem(item) if check is not None else None
            if issue is not None:
                return f"{issue} as item {index}"
        return None

    return ReturnType(text, problem)


@dataclass(frozen=True)
class Contract:
    """What the starter documents about one top-level name: a function (with its return type) or a class."""

    name: str
    is_class: bool
    returns: ReturnType | None = None


_CONTRACTS: dict[tuple[str, int, int], dict[str, Contract]] = {}  # (starter, mtime_ns, size) -> its contracts


def read_contracts(starter: Path) -> dict[str, Contract]:
    """The top-level functions and classes of a starter file; ``{}`` when it is missing or does not parse.

    Parsed once per version of the file in this process: a sweep checks dozens of trees against
    the same starters, and every tree has a guard of its own.
    """
    try:
        stat = starter.stat()
    except OSError:
        return {}
    key = (str(starter), stat.st_mtime_ns, stat.st_size)
    if key not in _CONTRACTS:
        _CONTRACTS[key] = _parse_contracts(starter)
    return _CONTRACTS[key]


def _parse_contracts(starter: Path) -> dict[str, Contract]:
    try:
        tree = ast.parse(starter.read_text(encoding="utf-8"), filename=str(starter))
    except (OSError, SyntaxError, ValueError):
        return {}
    tensor_names = {"torch.Tensor"}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "torch":
            tensor_names |= {alias.asname or alias.name for alias in node.names if alias.name == "Tensor"}
        elif isinstance(node, ast.Import):
            tensor_names |= {f"{alias.asname}.Tensor" for alias in node.names if alias.name == "torch" and alias.asname}
    contracts = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            contracts[node.name] = Contract(node.name, False, return_type(node.returns, frozenset(tensor_names)))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            contracts[node.name] = Contract(node.name, True)
    return contracts


def limit_unavailable() -> str | None:
    """Why this process cannot time calls with ``SIGALRM``, or None when it can.

    A call that finds ``SIGALRM`` taken by someone else (pytest-timeout's ``signal`` method) runs
    without this limit too, leaving that timer alone; the project sets ``timeout_method = thread``.
    """
    if not hasattr(signal, "setitimer"):
        return "this platform has no SIGALRM timer"
    if threading.current_thread() is not threading.main_thread():
        return "checks run outside the main thread"
    return None


class CallGuard:
    """One run's contracts and limits, and the functions that already ran out of time.

    ``limit`` is the per-call limit in seconds for code running in this process (0: none);
    ``remote_limit`` is the isolated worker's, used to word its time-outs. ``starters`` is the
    repository's ``exercises/`` folder, ``code_root``/``display_root`` the tree under test and how
    the learner sees it.
    """

    def __init__(self, limit: float, starters: Path, code_root: Path, display_root: str, remote_limit: float | None = None):
        self.limit = limit
        self.remote_limit = remote_limit
        self.starters = Path(starters)
        self.code_root = Path(code_root).resolve()
        self.display_root = display_root
        self.unavailable = limit_unavailable() if limit > 0 else None
        self._contracts: dict[tuple[str, str], dict[str, Contract]] = {}
        self._timed_out: dict[tuple[str, str, str], str] = {}

    def lab(self, code: Any, lab_folder: str) -> ContractLab:
        """``code`` (a LabCode or RemoteLabCode) seen through the contracts of ``lab_folder``'s starters."""
        return ContractLab(code, self, lab_folder)

    def contracts(self, lab_folder: str, module: str) -> dict[str, Contract]:
        key = (lab_folder, module)
        if key not in self._contracts:
            self._contracts[key] = read_contracts(self.starters / lab_folder / f"{module}.py")
        return self._contracts[key]

    def call(self, where: tuple[str, str, str], contract: Contract, target: Any, args: tuple, kwargs: dict) -> Any:
        """Call ``target`` for a check: refuse a function that timed out before, limit the time, check the result."""
        if where in self._timed_out:
            raise CallTimedOut(self._timed_out[where] + f"\n  (it ran out of time earlier in this run, so `{contract.name}` is not called again)")
        owns_timer = not _running  # a call made from inside another limited call is covered by that one's timer
        try:
            value = self._limited(target, args, kwargs)
        except _OutOfTime as stopped:
            if not owns_timer:
                raise
            raise self._timed_out_error(where, contract.name, args, kwargs, self.limit, self._frame_of(stopped)) from None
        except Exception as error:
            if _is_remote_timeout(error):
                frames = getattr(error, "learner_frames", None)
                frame = _remote_frame(frames[-1]) if frames else None
                raise self._timed_out_error(where, contract.name, args, kwargs, self.remote_limit, frame) from None
            raise
        if contract.returns is not None:
            issue = contract.returns.problem(value)
            if issue is not None:
                raise ContractError(f"{contract.name} returned {issue}; its documented return type is {contract.returns.text}{_advice(contract.returns.text, value)}")
        return value

    def _limited(self, target: Any, args: tuple, kwargs: dict) -> Any:
        global _running, _deadline
        if self.limit <= 0 or self.unavailable or _running or _is_remote(target) or not _alarm_is_ours():
            return target(*args, **kwargs)
        _deadline = time.monotonic() + self.limit
        _running = True  # before arming: a timer that fires in between sets itself for this call
        _arm(self.limit)
        try:
            return target(*args, **kwargs)
        finally:
            _running = False

    def _frame_of(self, stopped: BaseException) -> tuple[str, str, str] | None:
        """``(function, "file:line", source)`` of the innermost learner frame the timer interrupted."""
        found = None
        traceback = stopped.__traceback__
        while traceback is not None:
            code = traceback.tb_frame.f_code
            try:
                relative = Path(code.co_filename).resolve().relative_to(self.code_root).as_posix()
            except (ValueError, OSError):
                relative = None
            if relative is not None:
                found = (getattr(code, "co_qualname", code.co_name), f"{self.display_root}/{relative}:{traceback.tb_lineno}", _source(code.co_filename, traceback.tb_lineno))
            traceback = traceback.tb_next
        return found

    def _timed_out_error(self, where: tuple[str, str, str], name: str, args: tuple, kwargs: dict, limit: float | None, frame: tuple[str, str, str] | None) -> CallTimedOut:
        within = f"within {limit:g} s" if limit else "in time"
        message = f"your `{name}` did not return {within} (called with {arguments(args, kwargs)})"
        if frame is not None:
            function, place, source = frame
            inside = "" if function == name else f" in `{function}`"
            message += f"; it was at {place}{inside}" + (f" `{source}`" if source else "")
        message += " — an infinite loop, or far too slow?"
        self._timed_out[where] = message
        return CallTimedOut(message)


# The timer of limited calls. Setting an interval timer and clearing it around each call cost two
# system calls, and checks make hundreds of thousands of calls: a call reads the pending timer
# instead (one cheaper call) and sets it only when none is pending or it would fire after this
# call's deadline. A timer left by an earlier call that fires early sets itself again for what
# the running call has left. The ``lab`` fixture clears it after each check (:func:`disarm_call_timer`).
_running = False  # a limited call is in progress in this process
_deadline = 0.0  # time.monotonic() at which the running call is out of time


def _arm(seconds: float) -> None:
    """Make sure the timer fires within ``seconds`` (the pending timer, read fresh: learner code may have cleared it)."""
    pending = signal.getitimer(signal.ITIMER_REAL)[0]
    if pending == 0.0 or pending > seconds:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-6))


def disarm_call_timer() -> None:
    """Clear the call timer (at the end of a check): no signal reaches code that runs between checks.

    Only while the handler is ours: a timer that something else set is left alone.
    """
    if _signal.getsignal(signal.SIGALRM) is _on_alarm:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _on_alarm(signum: int, frame: Any) -> None:
    if not _running:
        return
    left = _deadline - time.monotonic()
    if left > 0:
        _arm(left)
        return
    _arm(REPEAT_SECONDS)  # fires again until the call is abandoned: a bare `except:` cannot hold it
    raise _OutOfTime


def _alarm_is_ours() -> bool:
    """Install :func:`_on_alarm` for SIGALRM unless something else handles that signal; True when it is ours.

    Installed once and left in place (it does nothing outside a limited call): checks make hundreds
    of thousands of calls, and swapping the handler around each one cost more than the calls.
    ``_signal.getsignal`` reads the handler without ``signal``'s enum conversion, for the same reason.
    """
    current = _signal.getsignal(signal.SIGALRM)
    if current is _on_alarm:
        return True
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return False
    signal.signal(signal.SIGALRM, _on_alarm)
    return True


def _is_remote(value: Any) -> bool:
    """True for objects and errors of the isolated worker (imported lazily: in-process runs never load it)."""
    remote = sys.modules.get("infralens.grading.remote")
    return remote is not None and isinstance(value, (remote.RemoteObject, remote.LearnerProcessError))


def _is_remote_timeout(error: Exception) -> bool:
    """True for the isolated worker's time-out, :class:`infralens.grading.remote.LearnerTimeout`."""
    remote = sys.modules.get("infralens.grading.remote")
    return remote is not None and isinstance(error, remote.LearnerTimeout)


def _remote_frame(frame: tuple) -> tuple[str, str, str]:
    function, file, line, source = frame
    return str(function), f"{file}:{line}", str(source).strip()


def _source(filename: str, line: int) -> str:
    import linecache

    return linecache.getline(filename, line).strip()[:VALUE_CHARS]


def arguments(args: tuple, kwargs: dict) -> str:
    """``(17, 16, block_size=4)``: a call's arguments, each summarized, the whole capped."""
    parts = [show(value, 40) for value in args] + [f"{key}={show(value, 40)}" for key, value in kwargs.items()]
    text = f"({', '.join(parts)}{',' if len(parts) == 1 and not kwargs else ''})"
    return text if len(text) <= ARGUMENTS_CHARS else text[: ARGUMENTS_CHARS - 2] + "…)"


def _advice(expected: str, value: Any) -> str:
    if expected == "int" and type(value) is float:
        return ": stay in integer arithmetic (// rather than /), or convert with int(...) once the value is whole"
    if expected in ("int", "float", "bool") and type(value).__module__.split(".")[0] in ("numpy", "torch"):
        return f": convert it with {expected}(...)"
    return ""


class ContractLab:
    """A lab's modules as checks see them: ``lab.kv_cache.blocks_needed`` is the wrapped learner function."""

    def __init__(self, code: Any, guard: CallGuard, lab_folder: str):
        self._code, self._guard, self._lab_folder = code, guard, lab_folder
        self._modules: dict[str, ContractModule] = {}  # checks read lab.<module> once per call they make

    def __getattr__(self, module: str) -> ContractModule:
        if module.startswith("_"):
            raise AttributeError(module)
        loaded = getattr(self._code, module)
        seen = self._modules.get(module)
        if seen is None or seen._module is not loaded:
            seen = self._modules[module] = ContractModule(loaded, self._guard, self._lab_folder, module)
        return seen


class ContractModule:
    """One learner module: the starter's functions and classes come out wrapped, everything else as is."""

    def __init__(self, module: Any, guard: CallGuard, lab_folder: str, name: str):
        self._module, self._guard, self._lab_folder, self._name = module, guard, lab_folder, name
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # name -> (the learner's object, what checks get)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = getattr(self._module, name)
        seen = self._wrapped.get(name)
        if seen is not None and seen[0] is value:  # the learner may rebind a name: wrap what is there now
            return seen[1]
        contract = self._guard.contracts(self._lab_folder, self._name).get(name)
        if contract is None or not callable(value):
            return value
        where = (self._lab_folder, self._name, name)
        wrapped = LimitedClass(value, self._guard, where, contract) if contract.is_class else _limited_function(value, self._guard, where, contract)
        self._wrapped[name] = (value, wrapped)
        return wrapped

    def __repr__(self) -> str:
        return f"<learner module {self._lab_folder}/{self._name}.py>"


def _limited_function(target: Any, guard: CallGuard, where: tuple[str, str, str], contract: Contract) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return guard.call(where, contract, target, args, kwargs)

    call.__name__ = call.__qualname__ = contract.name
    call.__doc__ = getattr(target, "__doc__", None) if not _is_remote(target) else None
    call.__wrapped__ = target  # inspect.signature() sees the learner's signature
    return call


class LimitedClass:
    """A learner class whose construction runs under the limit; everything else is the class itself."""

    __slots__ = ("_target", "_guard", "_where", "_contract")

    def __init__(self, target: Any, guard: CallGuard, where: tuple[str, str, str], contract: Contract):
        self._target, self._guard, self._where, self._contract = target, guard, where, contract

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._guard.call(self._where, self._contract, self._target, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __iter__(self):
        return iter(self._target)

    def __len__(self) -> int:
        return len(self._target)

    def __getitem__(self, key: Any) -> Any:
        return self._target[key]

    def __contains__(self, item: Any) -> bool:
        return item in self._target

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._target)

    def __subclasscheck__(self, subclass: Any) -> bool:
        return issubclass(subclass, self._target)

    def __eq__(self, other: object) -> bool:
        return self._target == (other._target if isinstance(other, LimitedClass) else other)

    def __hash__(self) -> int:
        return hash(self._target)

    def __repr__(self) -> str:
        return repr(self._target)
