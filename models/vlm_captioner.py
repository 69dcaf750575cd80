"""A vision-language captioner (SmolVLM / Idefics3 class) that answers with strict, validated JSON.

Loaded by hub id or local directory through `AutoModelForImageTextToText`. Without torchvision the
transformers `SmolVLMProcessor` cannot be built (STACK-NOTES section 6), so this adapter pairs the
tokenizer with `SmolVLMImageProcessorPil` and expands each `<image>` placeholder into the model's
image tokens itself (transformers' own `get_image_prompt_string`). A reply that is not the JSON
asked for is retried once, then raised as `CaptionReplyError` carrying both replies.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROMPT = (
    "These images show one motion segment of a manipulation video: {views}, and last a mask of the main "
    "moving part. {context}\nReply with JSON only, no prose, with these keys: "
    '"instruction_1" (descriptive, third person), "instruction_2" (imperative, at most 30 words), '
    '"instruction_3" (casual request, at most 20 words), "skill_labels" (1-2 of: reach, grasp, lift, '
    "transport, place, release, push, pull, rotate, open, close, press, reposition, unknown)."
)


class ChunkCaption(BaseModel):
    """The JSON a chunk caption must be."""

    model_config = ConfigDict(extra="ignore")
    instruction_1: str = Field(min_length=3)
    instruction_2: str = Field(min_length=3)
    instruction_3: str = Field(min_length=3)
    skill_labels: list[str] = Field(min_length=1, max_length=3)

    @field_validator("skill_labels")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        out = [s.strip().lower().replace(" ", "_") for s in v if s.strip()]
        if not out:
            raise ValueError("skill_labels is empty")
        return out


class CaptionReplyError(ValueError):
    """The model did not answer with valid caption JSON (after the retry)."""


def parse_reply(text: str) -> ChunkCaption:
    """The ChunkCaption in a reply (a ```json fence or prose around the object is tolerated)."""
    a, b = text.find("{"), text.rfind("}")
    if a < 0 or b <= a:
        raise CaptionReplyError(f"no JSON object in reply {text[:200]!r}")
    try:
        return ChunkCaption.model_validate(json.loads(text[a : b + 1]))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise CaptionReplyError(f"invalid caption JSON ({type(exc).__name__}: {str(exc)[:200]}) in {text[:200]!r}") from exc


class VLMCaptioner:
    """Greedy-decoding VLM over a few frames + a mask; `caption()` returns validated JSON."""

    def __init__(self, model: str, max_new_tokens: int = 256, image_size: int = 384, device: str = "cpu"):
        from transformers import AutoModelForImageTextToText, AutoTokenizer
        from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

        self.max_new_tokens = max_new_tokens
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForImageTextToText.from_pretrained(model).to(device).eval()
        except OSError as exc:
            raise OSError(
                f"captions: could not load the VLM {model!r} ({exc}). No model hub is reachable here: download "
                "it elsewhere (save_pretrained / huggingface-cli download) and set captions.model to that directory"
            ) from exc
        if (Path(model) / "preprocessor_config.json").is_file() or not Path(model).exists():
            self.images = SmolVLMImageProcessorPil.from_pretrained(model)
        else:
            side = self.model.config.vision_config.image_size
            self.images = SmolVLMImageProcessorPil(size={"longest_edge": side}, max_image_size={"longest_edge": side})
        self.images.do_image_splitting = False  # why: one global view per frame keeps CPU cost bounded
        cfg = self.model.config
        self.image_seq_len = int((cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 / cfg.scale_factor**2)
        self.device = device
        self.image_size = image_size

    def _prompt(self, n_images: int, text: str) -> str:
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        return "User:" + "<image>" * n_images + text + "<end_of_utterance>\nAssistant:"

    def generate(self, images: list[np.ndarray], text: str) -> str:
        """The model's greedy reply to `text` about `images` (H, W, 3) uint8."""
        from PIL import Image
        from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

        pil = [Image.fromarray(im) for im in images]
        for im in pil:
            im.thumbnail((self.image_size, self.image_size))
        px = self.images(images=[pil], return_tensors="pt", return_row_col_info=True)
        prompt = self._prompt(len(pil), text)
        parts = prompt.split("<image>")
        if len(parts) != len(pil) + 1:
            raise ValueError(f"prompt has {len(parts) - 1} <image> slots for {len(pil)} images")
        tok = self.tokenizer
        rows, cols = px["rows"][0], px["cols"][0]
        expanded = parts[0]
        for i, part in enumerate(parts[1:]):
            expanded += get_image_prompt_string(rows[i], cols[i], self.image_seq_len, "<fake_token_around_image>",
                                                "<image>", "<global-img>") + part
        enc = tok(expanded, return_tensors="pt", add_special_tokens=False)
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                  "pixel_values": px["pixel_values"], "pixel_attention_mask": px.get("pixel_attention_mask")}
        inputs = {k: v.to(self.device) for k, v in inputs.items() if v is not None}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)

    def caption(self, images: list[np.ndarray], context: str, views: str = "first, middle and last frame") -> ChunkCaption:
        """Ask for caption JSON; one retry with a sterner reminder; CaptionReplyError after that."""
        text = PROMPT.format(views=views, context=context)
        replies = []
        for attempt in range(2):
            reply = self.generate(images, text if attempt == 0 else text + "\nYour last reply was not valid JSON. JSON only.")
            replies.append(reply)
            try:
                return parse_reply(reply)
            except CaptionReplyError:
                continue
        raise CaptionReplyError(
            "no valid caption JSON after 2 tries; replies: " + " | ".join(repr(r[:120]) for r in replies)
        )


@functools.lru_cache(maxsize=2)
def load_captioner(model: str, max_new_tokens: int = 256, image_size: int = 384) -> VLMCaptioner:
    """One captioner per process and settings (a Ray worker loads the weights once)."""
    return VLMCaptioner(model, max_new_tokens=max_new_tokens, image_size=image_size)

