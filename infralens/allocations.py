"""What a piece of PyTorch code allocates, operator by operator: the memory side of the speed lessons.

Given, trusted tooling for checks and benchmarks. :func:`record_allocations` runs a function
under a ``TorchDispatchMode``, which sees every ATen operator the function reaches (after
``F.linear`` and friends have been decomposed). An operator's output whose storage belongs to
none of that operator's inputs is a new allocation: ``qweight.to(torch.bfloat16)`` is one,
``w.t()`` or ``w.unsqueeze(1)`` (views) and ``x.to(x.dtype)`` (no copy) are not. Each new
storage is recorded once, with the operator, shape, dtype and bytes.

Only tensors are seen: a kernel's internal scratch memory that never becomes a tensor is not.
On a CUDA device :attr:`Allocations.peak_bytes` adds the caching allocator's own peak, which
counts everything.

Measure trusted code only (a check's baseline, a built-in kernel). Code under measurement runs
in the measuring process and could leave the mode or patch this module, so a learner's own
function is never judged by what it allocates here; the checks judge numbers the learner
predicts against measurements of trusted code instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@dataclass(frozen=True)
class Allocation:
    """One new storage: the operator that made it, the output's shape and dtype, the storage's bytes."""

    op: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int

    def __str__(self) -> str:
        return f"{self.nbytes:,} bytes ({self.shape} {str(self.dtype).removeprefix('torch.')} from {self.op})"


@dataclass(frozen=True)
class Allocations:
    """Every new storage, in order; ``peak_bytes`` is the CUDA caching allocator's peak above its start, or None on CPU."""

    records: tuple[Allocation, ...]
    peak_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        return sum(record.nbytes for record in self.records)

    @property
    def largest(self) -> Allocation | None:
        return max(self.records, key=lambda record: record.nbytes, default=None)


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[Allocation] = []

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Nothing is compiled while recording. Left True, torch wraps the handler to keep
        # TorchDynamo out of it, importing TorchDynamo (seconds) on the first recorded operator.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = {_storage(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        seen = set(inputs)
        for tensor in tree_leaves(result):
            if isinstance(tensor, torch.Tensor) and _storage(tensor) not in seen:
                seen.add(_storage(tensor))
                self.records.append(Allocation(str(func.overloadpacket.__name__), tuple(tensor.shape), tensor.dtype, tensor.untyped_storage().nbytes()))
        return result


def _storage(tensor: torch.Tensor) -> tuple[str, int]:
    return str(tensor.device), tensor.untyped_storage().data_ptr()


def record_allocations(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Allocations]:
    """Run ``fn(*args, **kwargs)`` and return its result and the :class:`Allocations` it made."""
    cuda = any(isinstance(t, torch.Tensor) and t.is_cuda for t in tree_leaves((args, kwargs)))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    recorder = _Recorder()
    with recorder:
        result = fn(*args, **kwargs)
    peak = None
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - start
    return result, Allocations(tuple(recorder.records), peak)
