"""What moved in a motion chunk, measured from the tracks: the facts the template captions state.

The dominant entity is the keypoint cluster (among moving tracks) whose median displacement over
the chunk is largest. Direction is given in the chunk's first camera (x right, y down, z away);
distance is metric (cm) when world tracks exist, else pixels. Gripper opening/closing comes from
the demonstration's actions (Meta-World: last action dim, +1 closes, -1 opens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.types import Episode

STILL_CM = 1.0  # below this the entity "holds still"
STILL_PX = 5.0


@dataclass(frozen=True)
class ChunkMotion:
    start: int
    end: int
    cluster: int | None  # dominant moving cluster; None: nothing moved
    displacement_cam: tuple[float, float, float]  # (x right, y down, z away), m (metric) or px (z = 0)
    metric: bool  # True: displacement in meters
    gripper: str | None  # "closes" | "opens" | None (no actions or no change)
    n_tracks: int  # moving tracks of the dominant cluster seen in the chunk

    @property
    def distance(self) -> float:
        """Distance moved, in cm (metric) or px."""
        d = float(np.linalg.norm(self.displacement_cam))
        return 100.0 * d if self.metric else d

    @property
    def unit(self) -> str:
        return "cm" if self.metric else "px"

    @property
    def moved(self) -> bool:
        return self.cluster is not None and self.distance >= (STILL_CM if self.metric else STILL_PX)

    def directions(self) -> list[str]:
        """Dominant direction words, strongest first (components >= 40% of the largest)."""
        x, y, z = self.displacement_cam
        words = [(abs(x), "right" if x > 0 else "left"), (abs(y), "down" if y > 0 else "up"),
                 (abs(z), "away from the camera" if z > 0 else "toward the camera")]
        top = max(w[0] for w in words)
        return [name for mag, name in sorted(words, reverse=True) if top > 0 and mag >= 0.4 * top]


def load_actions(ep: Episode) -> np.ndarray | None:
    """The episode's actions (its demonstration, read by decode from actions.npy or LeRobot's action column) at the
    stored frames (T, D), or None without one. The last column is read as the gripper command (Meta-World's, and
    most LeRobot arms')."""
    if ep.frame_index is None or ep.demo is None or not ep.demo.actions.shape[1] or not len(ep.demo.actions):
        return None
    actions = ep.demo.actions
    return actions[np.clip(ep.frame_index, 0, len(actions) - 1)].astype(np.float64)


def gripper_change(gripper: np.ndarray, threshold: float = 0.5) -> str | None:
    """"closes" / "opens" when the gripper command rises / falls by `threshold` over the chunk."""
    if len(gripper) < 2:
        return None
    k = max(1, len(gripper) // 5)
    delta = float(np.mean(gripper[-k:]) - np.mean(gripper[:k]))
    return "closes" if delta >= threshold else "opens" if delta <= -threshold else None


def _endpoints(p: np.ndarray) -> np.ndarray:
    """(N, 2, D): first and last finite position of each track inside the chunk (NaN if none)."""
    ok = np.isfinite(p).all(-1)
    first = np.argmax(ok, axis=1)
    last = p.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
    idx = np.arange(len(p))
    out = np.stack([p[idx, first], p[idx, last]], 1)
    out[~ok.any(1)] = np.nan
    return out


def measure_chunk(ep: Episode, start: int, end: int, actions: np.ndarray | None = None) -> ChunkMotion:
    """Measure the dominant entity's motion over stored frames start..end (inclusive)."""
    gripper = None if actions is None else gripper_change(actions[start : end + 1, -1])
    none = ChunkMotion(start, end, None, (0.0, 0.0, 0.0), ep.tracks_xyz is not None, gripper, 0)
    if ep.is_moving is None or not np.any(ep.is_moving) or ep.visible is None:
        return none
    moving = np.flatnonzero(ep.is_moving)
    clusters = np.full(ep.n_tracks, -1) if ep.cluster_id is None else np.asarray(ep.cluster_id)
    metric = ep.tracks_xyz is not None and ep.w2c is not None
    if metric:
        p = ep.tracks_xyz[moving, start : end + 1].astype(np.float64)
        R = ep.w2c[start][:3, :3]
    else:
        p = ep.tracks_uv[moving, start : end + 1].astype(np.float64)
        p = np.where(ep.visible[moving, start : end + 1, None], p, np.nan)
    ends = _endpoints(p)
    disp = ends[:, 1] - ends[:, 0]
    seen = np.isfinite(disp).all(-1)
    best, best_d, best_n = None, -1.0, 0
    for c in np.unique(clusters[moving][seen]):
        d = np.median(disp[seen & (clusters[moving] == c)], axis=0)
        if np.linalg.norm(d) > best_d:
            best, best_d, best_n = int(c), float(np.linalg.norm(d)), int(np.sum(seen & (clusters[moving] == c)))
            best_disp = d
    if best is None:
        return none
    cam = R @ best_disp if metric else np.array([best_disp[0], best_disp[1], 0.0])
    return ChunkMotion(start, end, best, tuple(float(v) for v in cam), metric, gripper, best_n)
