"""μ0 checkpoints: a directory of safetensors + JSON, never pickle.

    config.json              Mu0Config (the model is rebuilt from it)
    model.safetensors        weights, minus frozen weights that come from the backbone/DINO sources
    optimizer.safetensors    optimizer state tensors (optional, for resume)
    optimizer.json           optimizer param groups (optional)
    trainer_state.json       {"step": ...}

A frozen SmolVLM2-2.2B is not copied into every checkpoint: it is reloaded from `config.backbone`.
The directory is written under a temporary name and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.loading import load_weights
from models.mu0 import Mu0
from models.mu0_config import Mu0Config

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(
    model: Mu0, out_dir: str | Path, step: int, optimizer: torch.optim.Optimizer | None = None
) -> Path:
    """Write the checkpoint directory `out_dir` (replaced if present); returns it."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    skip = model.source_parameter_names()
    weights = {k: v for k, v in model.state_dict().items() if k not in skip}
    save_file(_contiguous(weights), tmp / "model.safetensors")
    (tmp / "config.json").write_text(model.cfg.model_dump_json(indent=2))
    (tmp / "trainer_state.json").write_text(json.dumps({"step": int(step)}))
    if optimizer is not None:
        sd = optimizer.state_dict()
        tensors = {
            f"{pid}.{name}": (val if isinstance(val, torch.Tensor) else torch.tensor(val))
            for pid, st in sd["state"].items()
            for name, val in st.items()
        }
        save_file(_contiguous(tensors), tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps({"param_groups": sd["param_groups"]}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def read_step(ckpt_dir: str | Path) -> int:
    return int(json.loads((Path(ckpt_dir) / "trainer_state.json").read_text())["step"])


def read_config(ckpt_dir: str | Path) -> Mu0Config:
    path = Path(ckpt_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{ckpt_dir}: not a μ0 checkpoint (no config.json)")
    return Mu0Config.model_validate_json(path.read_text())


def load_checkpoint(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Mu0, int]:
    """(model, step): rebuild from config.json, then load model.safetensors (strictly, bar source weights)."""
    ckpt = Path(ckpt_dir)
    model = Mu0(read_config(ckpt))
    state = load_weights(ckpt / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = set(missing) - model.source_parameter_names()
    if missing or unexpected:
        raise ValueError(
            f"{ckpt}: checkpoint does not match its config (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    return model.to(device), read_step(ckpt)


def load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt_dir: str | Path) -> bool:
    """Restore optimizer state saved beside the weights; False when the checkpoint has none."""
    ckpt = Path(ckpt_dir)
    if not (ckpt / "optimizer.json").exists():
        return False
    groups = json.loads((ckpt / "optimizer.json").read_text())["param_groups"]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, val in load_weights(ckpt / "optimizer.safetensors").items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return True


def latest_checkpoint(root: str | Path) -> Path | None:
    """The `step-<step:06d>` directory under `root` with the highest step that has trainer_state.json."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / "trainer_state.json").exists()
    ]
    return max(found)[1] if found else None
