"""Hierarchical captions: text-only merges of adjacent motion chunks
(docs/method.md#stage-7-segmentation-and-captions).

motion (one per chunk) -> subtask (every adjacent pair and triple) -> task (the whole episode).
A merged caption spans the union of its children's frames and keeps their skills in order.
The merge is textual (the children's sentences joined in time order), so it works the same for
template and VLM chunk captions; the task caption restates the episode's own instruction.
"""

from __future__ import annotations

import re

from tasks.captions.records import Caption
from tasks.captions.template import EpisodeText, task_texts

MAX_IMPERATIVE_WORDS = 30  # instruction_2 <= 30 words (docs/method.md#stage-7-segmentation-and-captions)


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s[1:2].islower() or len(s) < 2 else s


def _clause(s: str, goal: str = "") -> str:
    s = s.strip().rstrip(".!?").strip()
    return s[: -len(goal)] if goal and s.endswith(goal) else s


def merge_texts(children: list[Caption], ep: EpisodeText) -> tuple[str, str, str, list[str]]:
    """(instruction_1..3, skill_labels) of adjacent children, joined in time order."""
    first, rest = children[0], children[1:]
    i1 = " ".join([first.instruction_1.strip()] + [f"Then {_lower_first(c.instruction_1.strip())}" for c in rest])
    goal = f" to {ep.instruction}" if ep.instruction else ""
    steps = [_clause(first.instruction_2, goal)] + [_lower_first(_clause(c.instruction_2, goal)) for c in rest]
    i2 = ", then ".join(steps) + goal
    words = i2.split()
    i2 = " ".join(words[:MAX_IMPERATIVE_WORDS]) + "."
    asks = [re.sub(r"^(could|can) you\s+", "", _clause(c.instruction_3), flags=re.I) for c in children]
    i3 = "Could you " + ", then ".join(_lower_first(a) for a in asks) + "?"
    skills: list[str] = []
    for c in children:
        skills += [s for s in c.skill_labels if s not in skills]
    return i1, i2, i3, skills[:3]


def build_hierarchy(motion: list[Caption], ep: EpisodeText, n_frames: int) -> list[Caption]:
    """Motion captions (ids 0..n-1, in time order) plus their subtask merges and the task caption."""
    out = list(motion)
    next_id = max((c.caption_id for c in motion), default=-1) + 1
    for width in (2, 3):
        for k in range(len(motion) - width + 1):
            kids = motion[k : k + width]
            i1, i2, i3, skills = merge_texts(kids, ep)
            out.append(Caption(next_id, "subtask", kids[0].start_frame, kids[-1].end_frame, i1, i2, i3,
                               tuple(skills), ep.embodiment, tuple(c.caption_id for c in kids)))
            next_id += 1
    skills: list[str] = []
    for c in motion:
        skills += [s for s in c.skill_labels if s not in skills and s != "unknown"]
    i1, i2, i3, labels = task_texts(ep, len(motion), skills)
    start = min((c.start_frame for c in motion), default=0)
    end = max((c.end_frame for c in motion), default=n_frames - 1)
    out.append(Caption(next_id, "task", start, end, i1, i2, i3, tuple(labels), ep.embodiment,
                       tuple(c.caption_id for c in motion)))
    return out
