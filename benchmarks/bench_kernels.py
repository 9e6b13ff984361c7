"""Lab 08: what kernel support buys — every linear path side by side, on the device present.

For each shape (M tokens, K inputs, N outputs) and path it prints the median time, the ratio to the
dense layers (float32 and bf16 on a CPU, bf16 on a GPU; above 1: faster than dense), the achieved
bandwidth (the bytes a fused kernel must move — the weight as stored, x and y, Lab 08's
``linear_traffic`` — over the time) and the largest tensor the path allocates (measured with
``infralens.allocations``). Paths: the dense layer; the reference solutions (eager PyTorch, which
widens the whole weight before the matmul); the dequantize-then-matmul path in the activations'
dtype; and PyTorch's own kernels where this device has them (``torch._weight_int8pack_mm`` and
``torch._weight_int4pack_mm_for_cpu`` on CPU, tinygemm's ``torch._weight_int4pack_mm`` on CUDA,
``torch._int_mm``), with the weight packed once beforehand as a server would. On CUDA the
reference int8 paths also run compiled by TorchInductor with coordinate-descent tuning (gpt-fast's
route to a fused kernel). Every path's output is compared with its own weight's float32 product
first: a path more than 2% off is reported as wrong, not timed.
Run from the repository root::

    python benchmarks/bench_kernels.py [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infralens.allocations import record_allocations  # noqa: E402
from infralens.loader import LabCode  # noqa: E402
from infralens.timing import peak_memory_bandwidth, time_calls  # noqa: E402

CPU_SHAPES = [(1, 4096, 4096), (16, 4096, 4096), (256, 2048, 2048)]
GPU_SHAPES = [(1, 16384, 16384), (16, 16384, 16384), (4096, 8192, 8192)]
GROUP_SIZE = 128
BF16 = torch.bfloat16

lab = LabCode(REPO / "solutions", "lab08_kernels", "solutions").kernels


def weights(m: int, k: int, n: int, device: str) -> dict:
    """Every stored form of one random layer, and one set of activations per timed call (made by :func:`main`)."""
    gen = torch.Generator(device=device).manual_seed(0)
    qweight = torch.randint(-127, 128, (n, k), generator=gen, device=device, dtype=torch.int8)
    scale = (0.005 + 0.02 * torch.rand(n, generator=gen, device=device)).to(BF16)
    codes = torch.randint(0, 16, (n, k), generator=gen, device=device, dtype=torch.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    group_scale = (0.01 + 0.02 * torch.rand(n, k // GROUP_SIZE, generator=gen, device=device)).to(BF16)
    zero = torch.full((n, k // GROUP_SIZE), 8, device=device, dtype=torch.uint8)
    dense = qweight.to(BF16) * scale.unsqueeze(1)
    dense4 = (codes.float() - zero.float().repeat_interleave(GROUP_SIZE, 1)) * group_scale.float().repeat_interleave(GROUP_SIZE, 1)
    return dict(qweight=qweight, scale=scale, codes=codes, packed=packed, group_scale=group_scale, zero=zero, dense=dense, dense4=dense4)


def naive_int8(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return F.linear(x, qweight.to(x.dtype) * scale.to(x.dtype).unsqueeze(1))


def paths(w: dict, device: str, k: int) -> list[tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]]:
    """``(name, format, fn(x))`` for every path this device runs; the format names the bytes moved
    and the weight whose product the output must match (int4 paths: ``dense4``, the others ``dense``)."""
    q, s, packed, gs, zero, dense = w["qweight"], w["scale"], w["packed"], w["group_scale"], w["zero"], w["dense"]
    found = [("dense bf16 F.linear", "dense", lambda x: F.linear(x, dense))]
    if device == "cpu":
        dense32 = dense.float()
        found.insert(0, ("dense fp32 F.linear", "dense32", lambda x: F.linear(x.float(), dense32)))
    found += [
        ("int8 weight-only, reference (eager)", "int8", lambda x: lab.int8_weight_only_linear(x, q, s)),
        ("int8 dequantize-then-matmul (bf16)", "int8", lambda x: naive_int8(x, q, s)),
    ]
    # tinygemm's scales-and-zeros: W = (code - 8) × scale + zero, so zero = (8 - zero_point) × scale.
    scales_and_zeros = torch.stack((gs.t(), ((8 - zero.float()) * gs.float()).to(BF16).t()), dim=-1).contiguous()  # (K/g, N, 2)
    if device == "cpu":
        if k % 64 == 0:  # torch._weight_int8pack_mm checks no shapes; it sums correctly where K is a multiple of 8 (AVX2, 2.13)
            found.append(("int8 torch._weight_int8pack_mm (CPU kernel)", "int8", lambda x: torch._weight_int8pack_mm(x, q, s)))
        int4_cpu = torch._convert_weight_to_int4pack_for_cpu(w["codes"].to(torch.int32), 1)
        found.append(("int4 torch._weight_int4pack_mm_for_cpu (CPU kernel)", "int4", lambda x: torch._weight_int4pack_mm_for_cpu(x, int4_cpu, GROUP_SIZE, scales_and_zeros)))
    found.append(("int4 weight-only g128, reference (eager)", "int4", lambda x: lab.int4_weight_only_linear(x, packed, gs, zero, GROUP_SIZE)))
    if device == "cuda":
        try:
            tiny = torch._convert_weight_to_int4pack(packed, 8)
            found.append(("int4 torch._weight_int4pack_mm (tinygemm)", "int4", lambda x: torch._weight_int4pack_mm(x, tiny, GROUP_SIZE, scales_and_zeros)))
        except RuntimeError as error:  # tinygemm needs sm80+ and a recent layout
            print(f"(tinygemm unavailable: {str(error).splitlines()[0][:100]})")
        fused8 = torch.compile(lab.int8_weight_only_linear, dynamic=False)
        found.append(("int8 weight-only, reference compiled", "int8", lambda x: fused8(x, q, s)))
    found.append(("W8A8 int8_dynamic_linear, reference (eager)", "int8", lambda x: lab.int8_dynamic_linear(x, q, s)))
    if device == "cuda":
        fused_w8a8 = torch.compile(lab.int8_dynamic_linear, dynamic=False)
        found.append(("W8A8 int8_dynamic_linear, reference compiled", "int8", lambda x: fused_w8a8(x, q, s)))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clock = "cuda" if device == "cuda" else "wall"
    if device == "cuda":
        torch._inductor.config.coordinate_descent_tuning = True  # a one-token mm becomes one fused reduction
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    peak = peak_memory_bandwidth()
    print(f"device: {name}; torch {torch.__version__}; median of {args.repeats} calls, each on fresh bf16 activations ({clock} clock)"
          + (f"; peak memory bandwidth {peak / 1e9:,.0f} GB/s" if peak else ""))
    bases = ("dense fp32 F.linear", "dense bf16 F.linear") if device == "cpu" else ("dense bf16 F.linear",)
    header = f"{'M×K×N':>16}  {'path':52} {'median':>10} " + " ".join(f"{'vs ' + b.split()[1]:>8}" for b in bases) + f" {'GB/s':>8} {'largest alloc':>14}"
    print(header)
    for m, k, n in CPU_SHAPES if device == "cpu" else GPU_SHAPES:
        w = weights(m, k, n, device)
        gen = torch.Generator(device=device).manual_seed(1)
        inputs = [(torch.randn(m, k, generator=gen, device=device, dtype=BF16),) for _ in range(args.repeats)]
        medians: dict[str, float] = {}
        for label, fmt, fn in paths(w, device, k):
            try:
                first = fn(inputs[0][0]).float()
                timing, _ = time_calls(fn, inputs, clock=clock, warmup=2)
            except RuntimeError as error:
                print(f"{f'{m}×{k}×{n}':>16}  {label:52} failed: {str(error).splitlines()[0][:80]}")
                continue
            expected = inputs[0][0].float() @ (w["dense4"] if fmt == "int4" else w["dense"].float()).t()
            error = float((first - expected).norm() / expected.norm())
            if error > 0.02:
                print(f"{f'{m}×{k}×{n}':>16}  {label:52} wrong: {error:.1%} off its weight's product; not reported")
                continue
            medians[label] = timing.median
            _, allocations = record_allocations(fn, inputs[0][0])
            traffic = lab.linear_traffic(m, k, n, "dense" if fmt == "dense32" else fmt, torch.float32 if fmt == "dense32" else BF16, GROUP_SIZE)
            ratios = " ".join(f"{medians[b] / timing.median:7.2f}×" if b in medians else f"{'':>8}" for b in bases)
            largest = allocations.largest.nbytes / 2**20 if allocations.largest else 0.0
            print(f"{f'{m}×{k}×{n}':>16}  {label:52} {timing.median * 1e3:8.3f}ms {ratios} {traffic.total_bytes / timing.median / 1e9:8.1f} {largest:10.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
