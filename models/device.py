"""Where torch work runs: one resolver for training, evaluation, prediction and the perception models."""

from __future__ import annotations

import torch


class DeviceUnavailable(RuntimeError):
    """A device was asked for that torch cannot use here (said up front, not deep inside a forward pass)."""


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when torch sees a GPU, else CPU; `cuda` without one is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r} was asked for, but torch sees no CUDA GPU")
    return device
