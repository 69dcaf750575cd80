"""The result of an ingest run: counts, throughput, versions, and where to look at failures."""

from __future__ import annotations

from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table


class Failure(BaseModel):
    source_uri: str
    status: str
    error: str


class IngestReport(BaseModel):
    run_tag: str
    dataset: str
    discovered: int
    skipped: int  # already in the dataset (resume)
    ok: int = 0
    failed: int = 0
    rejected: int = 0
    frames: int = 0
    tracks: int = 0
    samples: int = 0
    seconds: float = 0.0  # extraction + commit + index, once Ray is up
    versions: dict[str, int] = {}
    stage_seconds: dict[str, float] = {}
    failures: list[Failure] = []

    @property
    def attempted(self) -> int:
        return self.ok + self.failed + self.rejected

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def success(self) -> bool:
        """False only when there was work and none of it could be ingested."""
        return self.attempted == 0 or self.ok + self.rejected > 0

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("dataset", self.dataset),
            ("version tag", self.run_tag),
            ("episodes found", str(self.discovered)),
            ("already ingested (skipped)", str(self.skipped)),
            ("episodes ok", str(self.ok)),
            ("episodes rejected (quality)", str(self.rejected)),
            ("episodes failed", str(self.failed)),
            ("frames", str(self.frames)),
            ("tracks", str(self.tracks)),
            ("samples (keypoint-frames)", str(self.samples)),
            ("time (extract + commit + index)", f"{self.seconds:.1f} s"),
            ("frames/s", f"{self.frames_per_s:.1f}"),
        ]

    def table(self) -> Table:
        t = Table(title="ingest summary", show_header=False)
        for k, v in self.rows():
            t.add_row(k, escape(v))  # paths are user text: "[x]" in one must not read as markup
        return t

    def markdown(self) -> str:
        lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in self.rows()]
        if self.failures:
            lines += ["", "**Failures**", "", "| source | status | error |", "|---|---|---|"]
            lines += [f"| {f.source_uri} | {f.status} | {f.error} |" for f in self.failures]
        return "\n".join(lines)
