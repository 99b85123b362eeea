"""Where the kernel arithmetic runs: numpy, or torch on the CPU or a CUDA GPU.

The kernel tests are written once against the few operations below, so the numpy and
torch paths compute the same thing in the same order (docs/architecture.md,
"Multivariate drift"). torch is optional and imported lazily: without it, everything
runs on numpy; ``device: auto`` takes a CUDA GPU when torch sees one, numpy otherwise.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

DEVICES = ("auto", "cpu", "cuda", "numpy")


class BudgetExceeded(RuntimeError):
    """A test ran past its time budget and was abandoned."""


class Deadline:
    """A point in time after which a long computation gives up (checked between blocks)."""

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.perf_counter() + seconds
        self.seconds = seconds

    def check(self) -> None:
        if self.at is not None and time.perf_counter() > self.at:
            raise BudgetExceeded(f"time budget of {self.seconds:g}s exceeded")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_available() -> bool:
    if not torch_available():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is usable, else ``numpy`` (the same blocked algorithm;
    it beat torch's CPU path in docs/benchmarks.md, "Multivariate tests"). ``cpu`` is torch
    on the CPU, numpy without torch; ``cuda`` without a GPU is an error, as asking for it
    explicitly means the operator expects one."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "numpy"
    if device == "cpu" and not torch_available():
        return "numpy"
    if device == "cuda" and not cuda_available():
        raise ValueError("device cuda requested but torch finds no CUDA GPU")
    return device


def device_label(device: str) -> str:
    """What reports and metrics call a resolved device."""
    return {"numpy": "numpy", "cpu": "torch-cpu", "cuda": "cuda"}[device]


class Ops:
    """The array operations of the kernel tests, over numpy or torch tensors."""

    def __init__(self, device: str) -> None:
        self.device = resolve_device(device)
        self.torch: Any = None
        if self.device != "numpy":
            import torch

            self.torch = torch

    @property
    def is_numpy(self) -> bool:
        return self.torch is None

    def array(self, x: np.ndarray, dtype: str = "float32") -> Any:
        if self.is_numpy:
            return np.ascontiguousarray(x, dtype=dtype)
        return self.torch.as_tensor(
            np.ascontiguousarray(x), dtype=getattr(self.torch, dtype), device=self.device
        )

    def numpy(self, x: Any) -> np.ndarray:
        if self.is_numpy:
            return np.asarray(x)
        return np.asarray(x.detach().to("cpu").numpy())

    def zeros(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        if self.is_numpy:
            return np.zeros(shape, dtype=dtype)
        return self.torch.zeros(shape, dtype=getattr(self.torch, dtype), device=self.device)

    def f64(self, x: Any) -> Any:
        return x.astype(np.float64) if self.is_numpy else x.to(self.torch.float64)

    def cat(self, parts: list[Any]) -> Any:
        """Concatenate along columns."""
        return np.concatenate(parts, axis=1) if self.is_numpy else self.torch.cat(parts, dim=1)

    def sqnorms(self, z: Any) -> Any:
        return (z * z).sum(1)

    def sqdist(self, a: Any, b: Any, sa: Any, sb: Any) -> Any:
        """Squared distances between rows, clamped at 0 (float cancellation)."""
        d = a @ b.T  # then in place: no block-sized temporaries
        d *= -2.0
        d += sa[:, None]
        d += sb[None, :]
        if self.is_numpy:
            return np.maximum(d, 0.0, out=d)
        return d.clamp_(min=0.0)

    def exp_(self, x: Any) -> Any:
        if self.is_numpy:
            return np.exp(x, out=x)
        return x.exp_()

    def sum(self, x: Any, axis: int) -> Any:
        return x.sum(axis) if self.is_numpy else x.sum(dim=axis)

    def sum64(self, x: Any, axis: int) -> Any:
        """Sum in float64 (the accumulation of float32 blocks)."""
        if self.is_numpy:
            return x.sum(axis, dtype=np.float64)
        return x.sum(dim=axis, dtype=self.torch.float64)

    def fill_diagonal(self, x: Any, value: float) -> None:
        if self.is_numpy:
            np.fill_diagonal(x, value)
        else:
            x.fill_diagonal_(value)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
