"""A small, safe wire format between the judging process and the learner's worker process.

Only data crosses: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists, tuples,
dicts and sets of data, torch tensors and NumPy arrays of numeric dtypes, NumPy scalars, torch
and NumPy dtypes, the
tooling's own dataclasses (by value, from an allow-list), and *handles*: opaque references to
objects that stay in the worker. Nothing is pickled, and decoding builds exact built-in types, so
a value that the worker sends cannot run code in the judge or pretend to be something it is not.

A message is a JSON header plus binary frames (tensor and array payloads)::

    u32 header length | header (UTF-8 JSON) | u32 frame count | (u64 length | bytes) per frame
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import struct
import sys
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

if TYPE_CHECKING:
    import numpy as np

MAX_MESSAGE_BYTES = 1 << 30  # a worker cannot make the judge allocate more than 1 GiB per message
TOOLING_DATACLASSES = {"infralens.models.ModelConfig"}
_SURROGATE = re.compile("[\ud800-\udfff]")


class WireError(Exception):
    """A message that is not valid data under this format (the sender is broken or hostile)."""


@dataclasses.dataclass(frozen=True)
class Handle:
    """A reference to an object that lives in the worker: its id there, its type's name, whether
    it is a class or module (whose attributes the judge may cache), and the function's, class's or
    module's own name (``""`` for other objects)."""

    id: int
    type_name: str
    static: bool = False
    name: str = ""

    @property
    def label(self) -> str:
        """How feedback names the object: ``add`` for a function, else its type, ``QuantPlan``."""
        return self.name or self.type_name


def encode(value: Any, frames: list[bytes], as_handle: Callable[[Any], Handle] | None = None) -> Any:
    """``value`` as JSON-ready data, appending binary payloads to ``frames``.

    Objects that are not data become handles through ``as_handle`` (the worker's side); without
    it (the judge's side) they raise ``WireError``.
    """
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if abs(value) < 2**53 else {"int": str(value)}
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if kind is bytes:
        frames.append(value)
        return {"bytes": len(frames) - 1}
    if kind is list:
        return [encode(v, frames, as_handle) for v in value]
    if kind is tuple:
        return {"tuple": [encode(v, frames, as_handle) for v in value]}
    if kind in (set, frozenset):
        return {"set": [encode(v, frames, as_handle) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, frames, as_handle), encode(v, frames, as_handle)] for k, v in value.items()]}
    torch = sys.modules.get("torch")  # no torch imported: no value can be a tensor, and no import is paid
    if torch is not None and kind is torch.Tensor:
        tensor = value.detach().to("cpu").contiguous()
        frames.append(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return {"tensor": len(frames) - 1, "dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape)}
    if torch is not None and kind is torch.dtype:
        return {"torch_dtype": str(value).removeprefix("torch.")}
    np = sys.modules.get("numpy")  # likewise: a process that never imported NumPy holds no array
    if np is not None:
        if kind is np.ndarray and value.dtype.kind in "biufc":
            array = np.ascontiguousarray(value)
            frames.append(array.tobytes())
            return {"ndarray": len(frames) - 1, "dtype": array.dtype.str, "shape": list(array.shape)}
        if isinstance(value, np.dtype) and value.kind in "biufc":
            return {"np_dtype": value.str}
        if isinstance(value, np.generic) and kind.__module__ == "numpy" and np.dtype(kind).kind in "biufc":
            frames.append(np.asarray(value).tobytes())
            return {"npscalar": len(frames) - 1, "dtype": np.dtype(kind).str}
    qualified = f"{kind.__module__}.{kind.__qualname__}"
    if qualified in TOOLING_DATACLASSES and dataclasses.is_dataclass(value):
        fields = {f.name: encode(getattr(value, f.name), frames, as_handle) for f in dataclasses.fields(value)}
        return {"dataclass": qualified, "fields": fields}
    if isinstance(value, Handle):
        return {"handle": value.id, "type": value.type_name, "static": value.static, "name": value.name}
    if as_handle is None:
        raise WireError(f"cannot send a {kind.__name__} to the learner's process: only data (numbers, strings, tensors, arrays, containers) crosses")
    handle = as_handle(value)
    return {"handle": handle.id, "type": handle.type_name, "static": handle.static, "name": handle.name}


def decode(data: Any, frames: list[bytes], make_handle: Callable[[Handle], Any]) -> Any:
    """Rebuild a value from :func:`encode`'s output; handles become ``make_handle(Handle)``.

    Text comes back as valid Unicode (see :func:`clean_text`), so it can always be written out.
    """
    if type(data) is str:
        return clean_text(data)
    if data is None or type(data) in (bool, int, float):
        return data
    if type(data) is list:
        return [decode(v, frames, make_handle) for v in data]
    if type(data) is not dict or len(data) < 1:
        raise WireError(f"unexpected value in a message: {type(data).__name__}")
    if "int" in data:
        return int(str(data["int"]))
    if "float" in data:
        text = str(data["float"])
        if text not in ("nan", "inf", "-inf"):
            raise WireError(f"bad float {text!r}")
        return float(text)
    if "bytes" in data:
        return bytes(_frame(frames, data["bytes"]))
    if "tuple" in data:
        return tuple(decode(v, frames, make_handle) for v in _list(data["tuple"]))
    if "set" in data:
        items = [decode(v, frames, make_handle) for v in _list(data["set"])]
        try:
            return set(items)
        except TypeError as error:
            raise WireError(f"a set of unhashable values: {error}") from None
    if "dict" in data:
        pairs = [(decode(k, frames, make_handle), decode(v, frames, make_handle)) for k, v in _list(data["dict"])]
        try:
            return dict(pairs)
        except TypeError as error:
            raise WireError(f"a dict with unhashable keys: {error}") from None
    if "tensor" in data:
        return _tensor(data, frames)
    if "ndarray" in data:
        dtype = _numeric_dtype(data["dtype"])
        shape = _shape(data["shape"])
        payload = _frame(frames, data["ndarray"])
        if len(payload) != dtype.itemsize * math.prod(shape):
            raise WireError(f"array payload of {len(payload)} bytes does not fit {dtype} {shape}")
        return importlib.import_module("numpy").frombuffer(payload, dtype=dtype).reshape(shape).copy()
    if "torch_dtype" in data:
        torch = importlib.import_module("torch")
        dtype = getattr(torch, str(data["torch_dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise WireError(f"unknown torch dtype {data['torch_dtype']!r}")
        return dtype
    if "np_dtype" in data:
        return _numeric_dtype(data["np_dtype"])
    if "npscalar" in data:
        dtype = _numeric_dtype(data["dtype"])
        payload = _frame(frames, data["npscalar"])
        if len(payload) != dtype.itemsize:
            raise WireError("numpy scalar payload has the wrong size")
        return importlib.import_module("numpy").frombuffer(payload, dtype=dtype)[0].copy()
    if "dataclass" in data:
        return _tooling_dataclass(data, frames, make_handle)
    if "handle" in data:
        if type(data["handle"]) is not int or type(data.get("type")) is not str or type(data.get("static", False)) is not bool or type(data.get("name", "")) is not str:
            raise WireError("malformed handle")
        return make_handle(Handle(data["handle"], clean_text(data["type"][:200]), data.get("static", False), clean_text(data.get("name", "")[:200])))
    raise WireError(f"unknown tag in a message: {sorted(data)[:3]}")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (which no encoder writes) replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _frame(frames: list[bytes], index: Any) -> bytes:
    if type(index) is not int or not 0 <= index < len(frames):
        raise WireError(f"reference to a missing frame {index!r}")
    return frames[index]


def _list(value: Any) -> list:
    if type(value) is not list:
        raise WireError("expected a list")
    return value


def _shape(shape: Any) -> tuple[int, ...]:
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise WireError(f"bad shape {shape!r}")
    return tuple(shape)


def _numeric_dtype(name: Any) -> np.dtype:
    """A numeric NumPy dtype by its ``str`` (NumPy is imported here, when a message carries an array)."""
    try:
        dtype = importlib.import_module("numpy").dtype(str(name))
    except TypeError:
        raise WireError(f"unknown dtype {name!r}") from None
    if dtype.kind not in "biufc":
        raise WireError(f"non-numeric dtype {dtype} is not data")
    return dtype


def _tensor(data: dict, frames: list[bytes]) -> Any:
    torch = importlib.import_module("torch")
    dtype = getattr(torch, str(data.get("dtype")), None)
    if not isinstance(dtype, torch.dtype):
        raise WireError(f"unknown tensor dtype {data.get('dtype')!r}")
    shape = _shape(data["shape"])
    payload = _frame(frames, data["tensor"])
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(payload) != itemsize * math.prod(shape):
        raise WireError(f"tensor payload of {len(payload)} bytes does not fit {dtype} {list(shape)}")
    if not payload:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(dtype).reshape(shape)


def _tooling_dataclass(data: dict, frames: list[bytes], make_handle: Callable[[Handle], Any]) -> Any:
    qualified = data["dataclass"]
    if qualified not in TOOLING_DATACLASSES:
        raise WireError(f"{qualified!r} is not a tooling dataclass that may cross")
    module_name, _, class_name = qualified.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    fields = data.get("fields")
    if type(fields) is not dict:
        raise WireError("malformed dataclass fields")
    return cls(**{str(k): decode(v, frames, make_handle) for k, v in fields.items()})


def write_message(stream: BinaryIO, header: Any, frames: list[bytes]) -> None:
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    parts = [struct.pack("<I", len(text)), text, struct.pack("<I", len(frames))]
    for frame in frames:
        parts += [struct.pack("<Q", len(frame)), frame]
    stream.write(b"".join(parts))
    stream.flush()


def read_message(stream: BinaryIO, limit: int = MAX_MESSAGE_BYTES) -> tuple[Any, list[bytes]]:
    """Read one message of at most ``limit`` bytes; raises ``EOFError`` when the peer is gone and
    ``WireError`` on garbage."""
    budget = limit
    (length,) = struct.unpack("<I", _read_exact(stream, 4))
    if length > budget:
        raise WireError(f"message header of {length} bytes exceeds the limit of {limit} bytes")
    try:
        header = json.loads(_read_exact(stream, length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WireError(f"message header is not JSON: {error}") from None
    budget -= length
    (count,) = struct.unpack("<I", _read_exact(stream, 4))
    frames = []
    for _ in range(count):
        (size,) = struct.unpack("<Q", _read_exact(stream, 8))
        if size > budget:
            raise WireError(f"message of more than {limit} bytes")
        budget -= size
        frames.append(_read_exact(stream, size))
    return header, frames


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("the peer closed the channel")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
