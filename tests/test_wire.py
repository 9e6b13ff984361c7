"""The data-only wire format between judge and worker: exact round trips, and refusals of anything else."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from infralens.grading import wire


def roundtrip(value, as_handle=None, make_handle=lambda h: ("handle", h.id)):
    frames: list[bytes] = []
    header = wire.encode(value, frames, as_handle)
    stream = io.BytesIO()
    wire.write_message(stream, header, frames)
    stream.seek(0)
    header, frames = wire.read_message(stream)
    return wire.decode(header, frames, make_handle)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool, torch.float8_e4m3fn])
def test_tensors_round_trip_bit_exactly(dtype):
    source = (torch.randn(3, 5, generator=torch.Generator().manual_seed(0)) * 7).to(dtype)
    back = roundtrip(source)
    assert type(back) is torch.Tensor and back.dtype == dtype and back.shape == source.shape
    assert torch.equal(back.view(torch.uint8), source.view(torch.uint8))


def test_plain_data_round_trips_with_exact_types():
    value = {"a": [1, 2.5, None, True], (1, "k"): (b"\x00\xff", {3, 4}), "big": 2**80, "nan": math.nan, "inf": -math.inf}
    back = roundtrip(value)
    assert back["a"] == [1, 2.5, None, True] and type(back["a"][3]) is bool
    assert back[(1, "k")] == (b"\x00\xff", {3, 4}) and back["big"] == 2**80
    assert math.isnan(back["nan"]) and back["inf"] == -math.inf


def test_numpy_arrays_scalars_and_dtypes_round_trip():
    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    back = roundtrip([array, np.float32(1.5), np.dtype("<i4"), torch.int8, torch.empty(0, 3)])
    assert back[0].dtype == np.float16 and np.array_equal(back[0], array)
    assert back[1] == np.float32(1.5) and back[2] == np.dtype("<i4") and back[3] is torch.int8
    assert back[4].shape == (0, 3)


def test_objects_become_handles_only_where_the_sender_allows_it():
    class Learner:
        pass

    assert roundtrip([Learner()], as_handle=lambda v: wire.Handle(7, "Learner")) == [("handle", 7)]
    with pytest.raises(wire.WireError, match="only data"):
        roundtrip(Learner())
    with pytest.raises(wire.WireError, match="only data"):
        roundtrip(np.array([object()], dtype=object))


class _Subclass(int):
    pass


def test_subclasses_of_plain_types_are_not_data():
    with pytest.raises(wire.WireError, match="cannot send a _Subclass"):
        roundtrip(_Subclass(3))


@pytest.mark.parametrize(
    ("header", "frames", "message"),
    [
        ({"tensor": 0, "dtype": "float32", "shape": [2]}, [b"\x00" * 4], "does not fit"),
        ({"tensor": 3, "dtype": "float32", "shape": [1]}, [b"\x00" * 4], "missing frame"),
        ({"tensor": 0, "dtype": "os.system", "shape": [1]}, [b"\x00" * 4], "unknown tensor dtype"),
        ({"ndarray": 0, "dtype": "|O", "shape": [1]}, [b"\x00" * 8], "non-numeric dtype"),
        ({"float": "1e400"}, [], "bad float"),
        ({"dataclass": "os.Popen", "fields": {}}, [], "is not a tooling dataclass"),
        ({"pickle": "..."}, [], "unknown tag"),
        ({"handle": "1", "type": "x"}, [], "malformed handle"),
        ({"set": [[1]]}, [], "unhashable"),
    ],
    ids=["short-payload", "missing-frame", "bad-dtype", "object-array", "bad-float", "foreign-dataclass", "unknown-tag", "bad-handle", "unhashable-set"],
)
def test_malformed_messages_are_refused(header, frames, message):
    with pytest.raises(wire.WireError, match=message):
        wire.decode(header, frames, lambda h: h)


def test_oversized_and_truncated_messages_are_refused():
    huge = io.BytesIO((2**31).to_bytes(4, "little"))
    with pytest.raises(wire.WireError, match="exceeds the limit"):
        wire.read_message(huge)
    with pytest.raises(EOFError):
        wire.read_message(io.BytesIO(b"\x05\x00\x00\x00{}"))


def test_handles_carry_the_objects_own_name_for_feedback():
    back = wire.decode({"handle": 3, "type": "function", "static": False, "name": "add"}, [], lambda h: h)
    assert back == wire.Handle(3, "function", False, "add") and back.label == "add"
    assert wire.Handle(4, "QuantPlan").label == "QuantPlan"


def test_text_from_the_worker_is_always_valid_unicode():
    assert wire.decode("bad \udcff text", [], lambda h: h) == "bad \ufffd text"
    assert wire.decode({"tuple": ["\ud800"]}, [], lambda h: h) == ("\ufffd",)


def test_a_reply_over_the_judges_limit_is_refused_before_it_is_read():
    frames = [b"x" * 2048]
    stream = io.BytesIO()
    wire.write_message(stream, {"bytes": 0}, frames)
    stream.seek(0)
    with pytest.raises(wire.WireError, match="message of more than 1024 bytes"):
        wire.read_message(stream, limit=1024)
