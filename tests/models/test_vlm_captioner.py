"""The VLM caption backend through a tiny random SmolVLM saved locally: the text is meaningless,
the plumbing (tokenizer, Pil image processor, <image> expansion, generate, JSON checks) is real."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.vlm_captioner import CaptionReplyError, VLMCaptioner, load_captioner, parse_reply

SPECIAL = ["<pad>", "<|endoftext|>", "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]


def save_tiny_vlm(out) -> str:
    """A 2-layer SmolVLM (64 px images, 4 tokens each) with a 300-token BPE tokenizer, saved to `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMForConditionalGeneration
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = ['{"instruction_1": "the gripper opens the drawer", "skill_labels": ["grasp"]}', "User: Assistant:"] * 20
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="<end_of_utterance>", bos_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                              "global_image_token": "<global-img>"},
    )
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16)
    cfg = SmolVLMConfig(text_config=text.to_dict(), vision_config=vision, scale_factor=2,
                        image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    SmolVLMForConditionalGeneration(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 64}).save_pretrained(out)
    return str(out)


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
