"""Given code the labs' starters share: validating a tensor argument, with a message that names the problem.

It computes no lab's answer; Labs 05, 06 and 07 call it from their own validators.
"""

from __future__ import annotations

import torch
from torch import Tensor


def require_float_tensor(x: object, name: str, dtypes: tuple[torch.dtype, ...], min_dim: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite, non-empty tensor of a dtype in ``dtypes`` with
    at least ``min_dim`` dims. The message starts with ``name`` and names the problem: the type,
    the dtype, the shape, or "NaN or Inf" with how many, the first bad index and its value."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in dtypes:
        raise ValueError(f"{name} has dtype {x.dtype}; expected one of {dtypes}")
    if x.dim() < min_dim or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor with at least {min_dim} dims, got shape {tuple(x.shape)}")
    finite = torch.isfinite(x)
    if not finite.all():  # one reduction on the common path; the message's details only on failure
        bad = ~finite
        first = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (NaN or Inf), the first at {first}: {x[first].item()}")
