"""Checkpoints never execute code; torch.hub only from an allowlist or a local directory."""

import pickle

import pytest
import torch

from models.loading import UnsafeSourceError, hub_load, load_weights


class Boom:
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    w = {"a": torch.arange(6.0).reshape(2, 3)}
    save_file(w, tmp_path / "m.safetensors")
    assert torch.equal(load_weights(tmp_path / "m.safetensors")["a"], w["a"])


def test_pickles_are_loaded_with_weights_only(tmp_path):
    torch.save({"a": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load_weights(tmp_path / "ok.pt")["a"], torch.ones(2))
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"a": Boom()}))
    with pytest.raises(pickle.UnpicklingError):
        load_weights(tmp_path / "evil.pt")


def test_unknown_formats_and_missing_files(tmp_path):
    (tmp_path / "m.pkl").write_bytes(b"x")
    with pytest.raises(UnsafeSourceError, match="safetensors"):
        load_weights(tmp_path / "m.pkl")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "nope.safetensors")


def test_hub_allowlist_and_local_dir(tmp_path):
    with pytest.raises(UnsafeSourceError, match="not allowed"):
        hub_load("someone/evil-repo", "model")
    (tmp_path / "hubconf.py").write_text(
        "import torch\n\ndef tiny(n=3):\n    return torch.nn.Linear(n, 1)\n"
    )
    model = hub_load(str(tmp_path), "tiny", n=4)
    assert model.in_features == 4
