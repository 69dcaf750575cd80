"""The VLM backbone adapter: a SmolVLM / Idefics3 model, truncated, producing the prefix's per-layer K/V.

The prefix is [image tokens; depth tokens (optional); prompt tokens] run through the first K text
layers with a prefix-LM mask (bidirectional over the valid prefix). The trace expert reads each
layer's keys (after RoPE) and values from the returned cache; nothing in the prefix sees the suffix,
so the prefix is computed once per sample and reused across flow-matching Euler steps.

Loading goes through `AutoModelForImageTextToText.from_pretrained(id_or_dir)` for a hub id and a local
directory alike. The mu0-tiny preset builds a tiny random SmolVLM in code with an offline byte-level
BPE tokenizer trained deterministically on a fixed corpus (STACK-NOTES §6), so it needs no download.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.lora import add_lora, lora_active
from models.masks import additive, prefix_attention_mask
from models.mu0_config import TINY_BACKBONE, Mu0Config

EMPTY_CAPTION = "predict future trajectory"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class BackboneUnavailable(OSError):
    """The VLM could not be loaded; the message names the id or path tried and how to use a local copy."""


@dataclass
class Prefix:
    """Per-layer prefix keys/values (B, KV, P, hd) (keys after RoPE), token validity (B, P), valid count (B,)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor
    length: torch.Tensor


# ----------------------------------------------------------------------------------------------- images


def resize_with_pad(image: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """RGB (H, W, 3) uint8 or (3, H, W) float in [0, 1] -> (3, size, size) float32 in [-1, 1].

    The longer side is scaled to `size` (aspect kept) and the image is centred; the padding is black
    (-1). `padded_uv_scale` gives the matching map of normalised (u, v) into the padded square.
    """
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    else:
        x = image.float()
    _, h, w = x.shape
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    out = torch.zeros(3, size, size)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[:, top : top + nh, left : left + nw] = x.clamp(0, 1)
    return out * 2.0 - 1.0


def padded_uv_scale(height: int, width: int, size: int) -> tuple[float, float]:
    """Factors (su, sv) so that uv_padded = uv * (su, sv) for a centred resize_with_pad of an H x W image."""
    s = size / max(height, width)
    return round(width * s) / size, round(height * s) / size


def build_prompt(caption: str) -> str:
    """The recipe's prompt; an empty caption becomes the generic instruction."""
    caption = caption.strip()
    return f"Task: {caption if caption else EMPTY_CAPTION}\n"


# ------------------------------------------------------------------------------------------ tiny backbone

_TINY_CORPUS = [
    "Task: {c}\n".format(c=c)
    for c in (
        "pick up the red block and place it in the bin",
        "open the drawer",
        "close the drawer",
        "press the button",
        "push the puck to the goal",
        "reach the target",
        "turn the faucet",
        "slide the plate",
        "move the cup to the left",
        "lift the object",
        EMPTY_CAPTION,
    )
]
_TINY_SPECIAL = ["<pad>", "<unk>", "<|im_end|>", "<image>", "<fake_token_around_image>", "<global-img>"]


def tiny_tokenizer():
    """Byte-level BPE trained on a fixed corpus: deterministic, offline, encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=_TINY_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_TINY_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        extra_special_tokens={"image_token": "<image>"},
    )


def tiny_vlm_config(image_size: int = 64, n_layers: int = 4):
    """A SmolVLM config: ~1M-parameter llama text model (128 wide) and a 2-layer SigLIP-style vision tower."""
    from transformers import SmolVLMConfig

    return SmolVLMConfig(
        text_config=dict(
            model_type="llama", hidden_size=128, intermediate_size=512, num_hidden_layers=n_layers,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=384, max_position_embeddings=512,
        ),
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            image_size=image_size, patch_size=8,
        ),
        scale_factor=2,
        image_token_id=3,
    )


def build_tiny_vlm(image_size: int = 64, n_layers: int = 4, seed: int = 0):
    """(model, tokenizer): a random-initialised tiny SmolVLMForConditionalGeneration, built in code."""
    from transformers import SmolVLMForConditionalGeneration

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmolVLMForConditionalGeneration(tiny_vlm_config(image_size, n_layers))
    return model, tiny_tokenizer()


def save_tiny_vlm(out_dir: str | Path, image_size: int = 64, n_layers: int = 4, seed: int = 0) -> Path:
    """Write a tiny VLM + tokenizer with save_pretrained, loadable like a hub id (tests, offline demos)."""
    model, tok = build_tiny_vlm(image_size, n_layers, seed)
    out = Path(out_dir)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def load_vlm(id_or_dir: str):
    """(model, tokenizer) by hub id or local dir through the same from_pretrained path."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    try:
        model = AutoModelForImageTextToText.from_pretrained(id_or_dir)
        tok = AutoTokenizer.from_pretrained(id_or_dir)
    except (OSError, ValueError) as e:
        raise BackboneUnavailable(
            f"could not load the VLM backbone {id_or_dir!r} ({type(e).__name__}: {str(e).splitlines()[0]}). "
            "Download it where the hub is reachable (huggingface-cli download <id> --local-dir DIR) and set "
            "Mu0Config.backbone to that directory, or use the 'mu0-tiny' preset which needs no weights."
        ) from e
    return model, tok


# --------------------------------------------------------------------------------------------- the module


class VLMBackbone(nn.Module):
    """SmolVLM-class vision tower + connector + first K text layers -> `Prefix` (per-layer K/V)."""

    def __init__(self, cfg: Mu0Config) -> None:
        super().__init__()
        if cfg.backbone == TINY_BACKBONE:
            full, tok = build_tiny_vlm(cfg.image_size, max(cfg.backbone_layers, 1), cfg.seed)
        else:
            full, tok = load_vlm(cfg.backbone)
        vlm = full.model  # SmolVLMModel / Idefics3Model: vision_model, connector, text_model (no lm_head)
        text = vlm.text_model
        n_have = len(text.layers)
        if cfg.backbone_layers > n_have:
            raise ValueError(f"backbone {cfg.backbone!r} has {n_have} text layers; cannot keep {cfg.backbone_layers}")
        text.layers = nn.ModuleList(list(text.layers)[: cfg.backbone_layers])
        text.config.num_hidden_layers = cfg.backbone_layers
        if getattr(text.config, "layer_types", None):
            text.config.layer_types = text.config.layer_types[: cfg.backbone_layers]
        self.vlm = vlm
        self.tokenizer = tok
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.max_text_tokens = cfg.max_text_tokens
        self.frozen = cfg.train_expert_only
        if self.frozen:
            for p in self.vlm.parameters():
                p.requires_grad_(False)
        # Depth: LoRA on the vision tower plus a trainable clone of the patch-embedding stem.
        self.use_depth = cfg.use_depth
        if cfg.use_depth:
            emb = self.vlm.vision_model.embeddings.patch_embedding
            self.depth_patch_embedding = nn.Conv2d(
                emb.in_channels, emb.out_channels, emb.kernel_size, emb.stride, padding=emb.padding
            )
            self.depth_patch_embedding.load_state_dict(emb.state_dict())
            self.depth_patch_embedding.requires_grad_(True)
            add_lora(self.vlm.vision_model.encoder, LORA_TARGETS, cfg.lora_rank, cfg.lora_alpha)

    # properties the expert needs
    @property
    def text_config(self):
        return self.vlm.text_model.config

    @property
    def num_layers(self) -> int:
        return len(self.vlm.text_model.layers)

    def frozen_parameter_names(self) -> set[str]:
        return {n for n, p in self.named_parameters() if not p.requires_grad}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.vlm.eval()  # frozen weights: no dropout either
        return self

    # ------------------------------------------------------------------------------------------ pieces

    def tokenize(self, captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            [build_prompt(c) for c in captions],
            max_length=self.max_text_tokens,
            truncation=True,
            padding="longest",
            return_tensors="pt",
        )
        return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, T_img, D_vlm) through the vision tower and connector."""
        dtype = next(self.vlm.connector.parameters()).dtype
        hidden = self.vlm.vision_model(pixel_values=pixels.to(dtype)).last_hidden_state
        return self.vlm.connector(hidden)

    @contextmanager
    def _depth_stem(self):
        emb = self.vlm.vision_model.embeddings
        rgb = emb.patch_embedding
        emb.patch_embedding = self.depth_patch_embedding
        try:
            with lora_active(self.vlm.vision_model):
                yield
        finally:
            emb.patch_embedding = rgb

    def encode_depth(self, depth_pixels: torch.Tensor) -> torch.Tensor:
        with self._depth_stem():
            return self.encode_image(depth_pixels)

    # ------------------------------------------------------------------------------------------ forward

    def forward(
        self,
        image: torch.Tensor,
        text: list[str],
        depth_image: torch.Tensor | None = None,
        has_depth: torch.Tensor | None = None,
    ) -> Prefix:
        B, device = image.shape[0], image.device
        use_depth = self.use_depth and depth_image is not None
        if use_depth and has_depth is None:
            has_depth = torch.ones(B, dtype=torch.bool, device=device)
        use_depth = use_depth and bool(has_depth.any())
        needs_grad = torch.is_grad_enabled() and (not self.frozen or use_depth)
        with torch.set_grad_enabled(needs_grad):
            parts, valid = [], []
            with torch.set_grad_enabled(needs_grad and not self.frozen):
                img = self.encode_image(image)
            parts.append(img)
            valid.append(torch.ones(img.shape[:2], dtype=torch.bool, device=device))
            if use_depth:
                dep = self.encode_depth(depth_image)
                parts.append(dep.to(img.dtype))
                valid.append(has_depth[:, None].expand(dep.shape[:2]))
            ids, text_valid = self.tokenize(text, device)
            parts.append(self.vlm.text_model.get_input_embeddings()(ids).to(img.dtype))
            valid.append(text_valid)
            embeds = torch.cat(parts, dim=1)
            valid_all = torch.cat(valid, dim=1)
            position_ids = (valid_all.long().cumsum(-1) - 1).clamp(min=0)
            out = self.vlm.text_model(
                inputs_embeds=embeds,
                attention_mask=additive(prefix_attention_mask(valid_all), embeds.dtype)[:, None],
                position_ids=position_ids,
                use_cache=True,
            )
        cache = out.past_key_values
        keys = [layer.keys for layer in cache.layers]
        values = [layer.values for layer in cache.layers]
        return Prefix(keys=keys, values=values, valid=valid_all, length=valid_all.sum(-1))

