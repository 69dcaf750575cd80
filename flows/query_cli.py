"""`mu0 query`, `mu0 datasets`, `mu0 check`: find, list and validate trace data from the shell.

Thin wrappers over storage.query / storage.dataset / storage.check. The one thing done here rather
than in storage is embedding a `--like` sentence (storage never imports models).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)

TEXT_WIDTH = 48  # characters of a string cell in the table view
LIST_ITEMS = 3  # items of a list cell shown in the table view
# Columns too wide for a terminal (vectors, per-keypoint trajectories): the table view leaves them
# out unless --columns names them; jsonl and parquet keep everything.
WIDE_COLUMNS = ("embedding", "future", "future_valid", "history", "history_valid", "xyz", "visible", "w2c", "config")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one readable error line; the caller raises the returned Exit."""
    err.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code=code)


def cell(value) -> str:
    """A short rendering of one value: long strings cut, lists as their first items and length."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        head = ", ".join(cell(v) for v in value[:LIST_ITEMS])
        return f"[{head}{', …' if len(value) > LIST_ITEMS else ''}] ({len(value)})" if len(value) > LIST_ITEMS else f"[{head}]"
    text = str(value)
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"


def json_safe(value):
    """NaN/inf -> null (JSON has no NaN), timestamps -> ISO strings, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def query_cli(
    dataset: str = typer.Argument(..., help="Lance dataset root"),
    table: Optional[str] = typer.Option(
        None, help="captions | samples | episodes | tracks | frames (default: captions for --text/--like/--skill, else episodes)"),
    where: Optional[str] = typer.Option(None, help="SQL predicate, e.g. \"status = 'ok' AND n_frames > 40\""),
    text: Optional[str] = typer.Option(None, help="full-text search over the caption text (BM25)"),
    like: Optional[str] = typer.Option(None, help="semantic search: captions nearest to this sentence"),
    skill: Optional[list[str]] = typer.Option(None, help="captions with this skill label (repeat for any of several)"),
    episode: Optional[str] = typer.Option(None, help="only this episode_id"),
    version: Optional[int] = typer.Option(None, min=1, help="time travel: table version number"),
    tag: Optional[str] = typer.Option(None, help="time travel: a tag, e.g. ingest-<run id>"),
    limit: Optional[int] = typer.Option(20, min=1, help="rows at most (nearest-neighbour count for --like)"),
    columns: Optional[str] = typer.Option(None, help="comma-separated columns (default: all but blobs)"),
    format: str = typer.Option("table", "--format", help="table | jsonl | parquet"),
    out: Optional[Path] = typer.Option(None, help="output file (needed for parquet; jsonl defaults to stdout)"),
):
    """Find rows in DATASET: SQL filter, full-text, semantic and skill search, time travel."""
    from storage.query import QueryError, search

    if format not in ("table", "jsonl", "parquet"):
        raise fail(f"--format must be table, jsonl or parquet, not {format!r}")
    if format == "parquet" and out is None:
        raise fail("--format parquet needs --out FILE")
    if version is not None and tag is not None:
        raise fail("give --version or --tag, not both")
    name = table or ("captions" if text or like or skill else "episodes")
    vector = None
    if like is not None:
        from models.text_embedder import embed_texts

        try:
            vector = embed_texts([like])[0]
        except RuntimeError as exc:
            raise fail(str(exc)) from None
    try:
        rows = search(
            dataset, name, where=where, text=text, vector=vector, skills=skill, episode=episode,
            version=tag if tag is not None else version, limit=limit,
            columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
        )
    except QueryError as exc:
        raise fail(str(exc)) from None
    if format == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(rows, out)
        err.print(f"wrote {rows.num_rows} rows to {out}", highlight=False)
    elif format == "jsonl":
        lines = "".join(json.dumps(json_safe(r)) + "\n" for r in rows.to_pylist())
        if out is None:
            typer.echo(lines, nl=False)
        else:
            out.write_text(lines)
            err.print(f"wrote {rows.num_rows} rows to {out}", highlight=False)
    else:
        hidden = [] if columns else [c for c in WIDE_COLUMNS if c in rows.column_names]
        rows = rows.drop_columns(hidden)
        view = Table(title=f"{name}: {rows.num_rows} rows", show_lines=False)
        for c in rows.column_names:
            view.add_column(c, overflow="fold")
        for r in rows.to_pylist():
            view.add_row(*(cell(v) for v in r.values()))
        console.print(view)
        if hidden:
            err.print(f"not shown: {', '.join(hidden)} (name them in --columns, or use --format jsonl)", highlight=False)


def datasets_cli(dataset: str = typer.Argument(..., help="Lance dataset root")):
    """List the tables of DATASET: rows, versions, tags (with their versions) and indexes."""
    from storage.dataset import describe

    tables = describe(dataset)
    if not tables:
        raise fail(f"{dataset} holds no tables (nothing ingested, or the wrong path)")
    view = Table(title=dataset)
    for c in ("table", "rows", "version", "versions", "tags"):
        view.add_column(c, overflow="fold")
    for d in tables:
        tags = ", ".join(f"{t}@{v}" for t, v in d["tag_versions"].items()) or "-"
        view.add_row(d["table"], str(d["rows"]), str(d["version"]), str(d["versions"]), tags)
    console.print(view)
    for d in tables:  # one line per table: index lists are too long for a table cell
        idx = ", ".join(
            f"{i['type']}({','.join(i['columns'])})" + (f" +{i['unindexed_rows']} unindexed" if i["unindexed_rows"] else "")
            for i in d["indexes"]
        ) or "none"
        console.print(f"{d['table']} indexes: {idx}", highlight=False, soft_wrap=True)


def check_cli(
    dataset: str = typer.Argument(..., help="Lance dataset root"),
    pairs: int = typer.Option(256, min=1, help="keypoints reprojected through their camera"),
    seed: int = typer.Option(0, help="seed for choosing those keypoints"),
    repair: bool = typer.Option(False, help="first complete runs that died between table commits (as the next ingest "
                                "would) and delete data files killed runs never committed (when no run is going)"),
):
    """Validate DATASET before training: complete runs, unique ids, schema, shapes, pixels, cameras, captions."""
    from rich.markup import escape

    from storage.check import check_dataset
    from storage.query import counts
    from storage.writer import remove_stale_data_files, repair as repair_runs

    if not counts(dataset):
        raise fail(f"{dataset} holds no tables (nothing ingested, or the wrong path)")
    if repair:
        for tag in repair_runs(dataset):
            console.print(f"completed run {escape(tag)}", highlight=False)
        stale = remove_stale_data_files(dataset)
        if stale:
            console.print(f"deleted {len(stale)} data files that killed runs never committed", highlight=False)
    findings = check_dataset(dataset, pairs=pairs, seed=seed)
    view = Table(title=f"check {dataset}")
    for c in ("check", "result", "checked", "failed"):
        view.add_column(c, overflow="fold")
    for f in findings:
        view.add_row(escape(f.check), "[green]pass[/green]" if f.ok else "[red]FAIL[/red]", str(f.checked), str(f.failed))
    console.print(view)
    bad = [f for f in findings if not f.ok]
    for f in bad:
        console.print(f"[red]FAIL[/red] {escape(f.check)}: {f.failed} of {f.checked}", highlight=False, soft_wrap=True)
        for e in f.examples:
            console.print(f"    {escape(e)}", highlight=False, soft_wrap=True)
    console.print(f"{len(findings) - len(bad)} of {len(findings)} checks passed", highlight=False)
    raise typer.Exit(code=1 if bad else 0)
