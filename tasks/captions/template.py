"""The offline `template` caption backend: sentences built from the episode's own instruction
(meta.json `instruction` / `task`) and the motion measured in each chunk (tasks/captions/motion.py).

No model, no randomness: the same episode always gets the same text, and every number in it was
measured. Three styles per docs/method.md#stage-7-segmentation-and-captions: descriptive third person,
imperative, casual request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.captions.motion import ChunkMotion

# Skill words our task instructions use, mapped to labels (tasks/caption_records.SKILLS).
_TASK_SKILLS = {
    "open": ("open", "pull"), "close": ("close", "push"), "press": ("press", "push"), "push": ("push",),
    "pull": ("pull",), "pick": ("grasp", "lift"), "grasp": ("grasp",), "lift": ("lift",), "place": ("place",),
    "put": ("place",), "reach": ("reach",), "turn": ("rotate",), "rotate": ("rotate",), "move": ("transport",),
}
_PRESET_EMBODIMENT = {"sim": "robot_gripper", "droid": "robot_gripper", "agibot": "robot_gripper", "egodex": "human_hand"}
_NOT_VERBS = {"the", "a", "an", "it", "its", "them", "their", "his", "her", "to", "then"}


@dataclass(frozen=True)
class EpisodeText:
    """What the episode says about itself: its instruction (imperative) and who acts."""

    instruction: str  # e.g. "open the drawer"; "" when unknown
    embodiment: str  # human_hand | robot_gripper | robot_arm | tool | unknown

    @property
    def actor(self) -> str:
        return {"unknown": "the actor"}.get(self.embodiment, "the " + self.embodiment.replace("_", " "))

    @classmethod
    def of(cls, meta: dict, preset: str) -> "EpisodeText":
        text = str(meta.get("instruction") or str(meta.get("task") or "").replace("-", " ").replace("_", " "))
        text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip()
        text = text[:1].lower() + text[1:]
        emb = str(meta.get("embodiment") or _PRESET_EMBODIMENT.get(preset, "unknown"))
        return cls(text, emb)


def third_person(imperative: str) -> str:
    """'pick up the puck and place it' -> 'picks up the puck and places it' (first verb and verbs after 'and')."""
    words = imperative.split()
    for i, w in enumerate(words):
        if i == 0 or (words[i - 1] == "and" and w not in _NOT_VERBS):
            words[i] = _s_form(w)
    return " ".join(words)


def _s_form(verb: str) -> str:
    if re.search(r"(s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def task_skills(instruction: str) -> list[str]:
    out: list[str] = []
    for w in re.findall(r"[a-z]+", instruction.lower()):
        out += [s for s in _TASK_SKILLS.get(w, ()) if s not in out]
    return out


def motion_skills(m: ChunkMotion) -> list[str]:
    """Labels the measurement supports: gripper closing = grasp, opening = release (place when moving down)."""
    dirs = m.directions() if m.moved else []
    if m.gripper == "closes":
        return ["grasp"]
    if m.gripper == "opens":
        return ["place", "release"] if "down" in dirs else ["release"]
    if not m.moved:
        return []
    if dirs and dirs[0] == "up":
        return ["lift"]
    return ["reach"] if m.gripper is None and m.n_tracks else ["transport"]


def _movement(m: ChunkMotion) -> str:
    """'moves 12 cm right and away from the camera' / 'holds still'."""
    if not m.moved:
        return "holds still"
    dirs = m.directions()
    where = " and ".join(dirs[:2])
    return f"moves {m.distance:.0f} {m.unit} {where}"


def _entity(m: ChunkMotion) -> str:
    """Clusters have no names yet: the unclustered moving keypoints are 'the moving part'."""
    if m.cluster is None:
        return "the scene"
    return "the moving part" if m.cluster < 0 else f"moving part {m.cluster}"


def chunk_texts(m: ChunkMotion, ep: EpisodeText) -> tuple[str, str, str, list[str]]:
    """(instruction_1, instruction_2, instruction_3, skill_labels) of one motion chunk."""
    where = " and ".join(m.directions()[:2])
    grip = {"closes": "the gripper closes", "opens": "the gripper opens"}.get(m.gripper or "", "")
    move = f"travels {m.distance:.0f} {m.unit} {where}" if m.moved else "holds still"
    goal = f" as {ep.actor} works to {ep.instruction}" if ep.instruction else ""
    i1 = f"{_entity(m).capitalize()} {move}{goal}" + (f", and {grip}" if grip else "") + "."
    verb = f"Move {_entity(m)} {m.distance:.0f} {m.unit} {where}" if m.moved else f"Hold {_entity(m)} still"
    grip_cmd = {"closes": ", closing the gripper", "opens": ", opening the gripper"}.get(m.gripper or "", "")
    i2 = f"{verb}{grip_cmd}" + (f" to {ep.instruction}" if ep.instruction else "") + "."
    ask = f"move it {m.directions()[0]}" if m.moved else "keep it steady"
    extra = {"closes": " and grab it", "opens": " and let go"}.get(m.gripper or "", "")
    i3 = f"Could you {ask}{extra}?"
    own = motion_skills(m)
    skills = (own + [s for s in task_skills(ep.instruction) if s not in own])[:3] or ["unknown"]
    return i1, i2, i3, skills


def task_texts(ep: EpisodeText, n_chunks: int, skills: list[str]) -> tuple[str, str, str, list[str]]:
    """The whole-episode caption: the instruction itself in three styles."""
    if not ep.instruction:
        return (f"{ep.actor.capitalize()} moves objects in {n_chunks} motion segments.",
                "Repeat the motion shown.", "Can you do what they did?", skills or ["unknown"])
    i1 = f"{ep.actor.capitalize()} {third_person(ep.instruction)}" + (
        f" in {n_chunks} motion segments." if n_chunks > 1 else ".")
    i2 = ep.instruction[:1].upper() + ep.instruction[1:] + "."
    i3 = f"Hey, can you {ep.instruction}?"
    labels = task_skills(ep.instruction) + [s for s in skills if s not in task_skills(ep.instruction)]
    return i1, i2, i3, labels[:4] or ["unknown"]
