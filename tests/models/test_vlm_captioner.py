"""The VLM caption backend through a tiny random SmolVLM saved locally: the text is meaningless,
the plumbing (tokenizer, Pil image processor, <image> expansion, generate, JSON checks) is real."""

from __future__ import annotations

import numpy as np
import pytest

from models.vlm_captioner import CaptionReplyError, VLMCaptioner, load_captioner, parse_reply
from tests.models.tiny_vlm import save_tiny_vlm

@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> str:
    return save_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


class CountingCaptioner(VLMCaptioner):
    """The real captioner, counting how often the model is asked (a spy, not a stand-in)."""

    calls = 0

    def generate(self, images, text):
        self.calls += 1
        return super().generate(images, text)


def test_tiny_vlm_generates_from_frames_and_mask(tiny_vlm):
    vlm = load_captioner(tiny_vlm, max_new_tokens=12, image_size=64)
    assert load_captioner(tiny_vlm, max_new_tokens=12, image_size=64) is vlm  # loaded once per process
    assert vlm.image_seq_len == 4
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    reply = vlm.generate(images, "describe the motion")
    assert isinstance(reply, str)
    with pytest.raises(ValueError, match="4 images"):
        vlm.generate(images, "<image> one too many")


def test_malformed_reply_is_retried_once_then_raised(tiny_vlm):
    vlm = CountingCaptioner(tiny_vlm, max_new_tokens=8, image_size=64)
    images = [np.zeros((48, 64, 3), np.uint8)] * 3
    with pytest.raises(CaptionReplyError, match="after 2 tries"):
        vlm.caption(images, "The video's task: open the drawer.")
    assert vlm.calls == 2


def test_parse_reply_accepts_fenced_json_and_rejects_bad_fields():
    ok = parse_reply('```json\n{"instruction_1": "The hand opens the drawer.", "instruction_2": "Open the drawer.", '
                     '"instruction_3": "Open it?", "skill_labels": ["Open", "pull "], "embodiment_type": "human_hand"}\n```')
    assert ok.skill_labels == ["open", "pull"] and ok.instruction_2 == "Open the drawer."
    for bad in ["no json here", '{"instruction_1": "x"', '{"instruction_1": "The hand", "instruction_2": "Open.", '
                '"instruction_3": "Hm?", "skill_labels": []}']:
        with pytest.raises(CaptionReplyError):
            parse_reply(bad)


def test_missing_model_says_how_to_point_at_a_local_copy(tmp_path):
    with pytest.raises(OSError, match="save_pretrained"):
        VLMCaptioner(str(tmp_path / "absent"))
