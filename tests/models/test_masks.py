"""Attention masks follow the rules of docs/method.md#model-masking, checked cell by cell on a small case."""

import torch

from models.masks import full_attention_mask, suffix_attention_mask, suffix_layout, suffix_token_valid

T, F_ = True, False


def test_exact_pattern_two_history_groups_one_future():
    # 2 keypoints x (2 history groups + 1 future group); prefix of 3 tokens, the last one padding.
    group, is_future = suffix_layout(2, history_tokens=2, future_tokens=1)
    assert group.tolist() == [0, 1, 2, 0, 1, 2]
    assert is_future.tolist() == [F_, F_, T, F_, F_, T]
    prefix_valid = torch.tensor([[T, T, F_]])
    token_valid = torch.ones(1, 6, dtype=torch.bool)
    m = full_attention_mask(prefix_valid, token_valid, group, is_future)[0].int()
    expected = torch.tensor(
        [
            # prefix p0 p1 p2 | k0h0 k0h1 k0f | k1h0 k1h1 k1f
            [1, 1, 0, 0, 0, 0, 0, 0, 0],  # p0: valid prefix only, never the suffix
            [1, 1, 0, 0, 0, 0, 0, 0, 0],  # p1
            [1, 1, 1, 0, 0, 0, 0, 0, 0],  # p2 (padding) sees itself so its row is not empty
            [1, 1, 0, 1, 0, 0, 1, 0, 0],  # k0 h0: history groups <= 0 of every keypoint
            [1, 1, 0, 1, 1, 0, 1, 1, 0],  # k0 h1: groups <= 1, no future
            [1, 1, 0, 1, 1, 1, 1, 1, 1],  # k0 f: the whole suffix
            [1, 1, 0, 1, 0, 0, 1, 0, 0],  # k1 h0
            [1, 1, 0, 1, 1, 0, 1, 1, 0],  # k1 h1
            [1, 1, 0, 1, 1, 1, 1, 1, 1],  # k1 f
        ]
    )
    assert torch.equal(m, expected), m


def test_padding_keypoints_and_empty_history_are_never_attended():
    keypoint_mask = torch.tensor([[T, F_, T]])
    history_mask = torch.zeros(1, 3, 8, dtype=torch.bool)
    history_mask[0, 0, 5] = True  # keypoint 0 has one valid step, keypoint 2 none (history dropout)
    valid = suffix_token_valid(keypoint_mask, history_mask, history_tokens=1, future_tokens=1)
    assert valid.tolist() == [[T, T, F_, F_, F_, T]]
    group, is_future = suffix_layout(3, 1, 1)
    m = suffix_attention_mask(torch.tensor([[T]]), valid, group, is_future)[0].int()
    # columns: prefix | k0h k0f | k1h k1f | k2h k2f
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0, 0],  # k0h
            [1, 1, 1, 0, 0, 0, 1],  # k0f: valid suffix tokens only
            [1, 0, 0, 1, 0, 0, 0],  # k1h (padding): itself only
            [1, 0, 0, 0, 1, 0, 0],  # k1f (padding)
            [1, 0, 0, 0, 0, 1, 0],  # k2h (no valid history): invalid, so prefix and itself only
            [1, 1, 1, 0, 0, 0, 1],  # k2f
        ]
    )
    assert torch.equal(m, expected), m
