"""Small test videos written with PyAV (optionally with container metadata tags)."""

from __future__ import annotations

import av
import numpy as np


def write_video(path, n=6, w=64, h=48, tags=None):
    opts = {"movflags": "use_metadata_tags"} if tags else {}
    with av.open(str(path), "w", options=opts) as c:
        c.metadata.update(tags or {})
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), (i * 30) % 256, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
