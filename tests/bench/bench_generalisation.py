"""Benchmark: does μ0-tiny generalise? Pretrain on 40 Meta-World tasks, score on held-out seeds and on
10 held-out tasks never seen in pretraining, against every baseline (CPU).

    python -m tests.bench.bench_generalisation --work W --stages corpus,ingest      # data, as a user makes it
    python -m tests.bench.bench_generalisation --work W --stages train --variant mu0-tiny --steps 6000
    python -m tests.bench.bench_generalisation --work W --stages train --variant no-point-encoder --steps 6000
    python -m tests.bench.bench_generalisation --work W --stages eval,curves,pictures

Stages (each reuses what exists under --work):
- `corpus` runs `mu0 sim`: 240 static + 80 orbiting-camera episodes of the 40 `pretrain` tasks (seeds
  0.., 1000..), 40 held-out-seed episodes of the same tasks (seeds 10000..), 40 static + 10 orbiting
  episodes of the 10 `held-out` tasks (seeds 20000.., 21000..); `tasks/sim/generate.py` fixes the split.
- `ingest` runs `mu0 ingest --preset sim` into traces-train, traces-heldout-seeds, traces-heldout-tasks.
- `train` pretrains one variant (`VARIANTS`) on traces-train; its 5% eval split (by episode hash) is the
  validation set: held-out loss and ADE per checkpoint, checkpoint selection by that loss. The two test
  sets are never looked at while training or choosing settings.
- `eval` scores each trained variant's best checkpoint and the baselines on both test sets with the
  headline protocol; prints the uvz table and writes every number to results.json and tables.md.
- `points` chooses the model's point prediction on the validation split: uvz ADE/FDE of one draw
  against the mean of 2, 4, 8, 16 draws (the best mu0-tiny checkpoint).
- `curves` saves curves.png (training loss, validation loss and ADE against steps, per run under runs/).
- `pictures` draws `mu0 predict` pictures of held-out-task frames into --pictures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS: dict[str, dict] = {
    "mu0-tiny": {},  # the preset: VLM image tokens + a point encoder trained from scratch
    "no-point-encoder": {"point_encoder_channels": 0},  # the ablation: VLM image tokens only (the old preset)
}
CORPORA = [  # (directory, episodes, task set, camera, first seed)
    ("corpus-train", 240, "pretrain", "static", 0),
    ("corpus-train", 80, "pretrain", "orbit", 1000),
    ("corpus-heldout-seeds", 40, "pretrain", "static", 10000),
    ("corpus-heldout-tasks", 40, "held-out", "static", 20000),
    ("corpus-heldout-tasks", 10, "held-out", "orbit", 21000),
]
DATASETS = ("train", "heldout-seeds", "heldout-tasks")
TEST_SETS = ("heldout-seeds", "heldout-tasks")


def mu0(*args: str) -> None:
    """The user-facing CLI, in a child process."""
    cmd = [sys.executable, "-m", "flows.cli", *args]
    print("$ mu0 " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def stage_corpus(work: Path, max_steps: int) -> None:
    for name, n, tasks, camera, seed in CORPORA:
        out = work / name
        have = {p.name for p in out.iterdir()} if out.is_dir() else set()
        from tasks.sim.generate import task_names

        names = task_names(tasks)
        want = {f"{names[i % len(names)]}-{seed + i:05d}" for i in range(n)}
        if want <= have:
            print(f"[corpus] reuse {out} ({camera}, seeds {seed}..)")
            continue
        t0 = time.perf_counter()
        mu0("sim", "--out", str(out), "--episodes", str(n), "--tasks", tasks, "--camera", camera, "--seed", str(seed),
            "--max-steps", str(max_steps))
        print(f"[corpus] {n} {camera} episodes -> {out} in {time.perf_counter() - t0:.0f} s")


def stage_ingest(work: Path) -> None:
    for name in DATASETS:
        t0 = time.perf_counter()
        mu0("ingest", str(work / f"corpus-{name}"), "--dataset", str(work / f"traces-{name}"), "--preset", "sim", "--sequential")
        print(f"[ingest] {name} in {time.perf_counter() - t0:.0f} s")


def run_dir(work: Path, variant: str) -> Path:
    return work / "runs" / variant


def stage_train(work: Path, variant: str, args: argparse.Namespace) -> dict:
    """Train `variant` into runs/<--run-name or the variant's name>."""
    from models.mu0_config import get_model_preset
    from tasks.train.config import PretrainConfig
    from tasks.train.loop import train
    from tasks.train.stats import ensure_trace_stats

    model = get_model_preset("mu0-tiny", **VARIANTS[variant], max_keypoints=args.max_keypoints)
    cfg = PretrainConfig(model=model, steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.schedule,
                         warmup_steps=args.warmup, eval_fraction=0.05, seed=args.seed, checkpoint_every=args.checkpoint_every,
                         log_every=50, out_dir=str(run_dir(work, args.run_name or variant)), device="cpu")
    dataset = str(work / "traces-train")
    stats = ensure_trace_stats(dataset, horizon=model.horizon)

    def show(rec: dict) -> None:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()), flush=True)

    res = train(dataset, cfg, stats, on_log=show)
    print(f"[train] {variant}: steps {res.start_step} -> {res.final_step} in {res.seconds:.0f} s "
          f"({res.steps_per_s:.2f} steps/s); best {res.best_checkpoint}")
    out = {"variant": variant, "config": cfg.model_dump(mode="json"), "seconds": res.seconds, "steps_per_s": res.steps_per_s,
           "start_step": res.start_step, "final_step": res.final_step, "best_checkpoint": res.best_checkpoint, "log": res.log}
    (Path(cfg.out_dir) / "train.json").write_text(json.dumps(out, indent=1))
    return out


def stage_eval(work: Path) -> dict:
    import torch

    from models.checkpoint import load_checkpoint
    from models.text_embedder import embed_texts
    from tasks.train.baselines import NearestNeighbour, predict_constant_velocity, predict_zero_motion
    from tasks.train.batches import BatchConfig
    from tasks.train.evaluate import EvalProtocol, eval_batches, evaluate_methods, model_predictor, n_keypoints_scored, pivot
    from tasks.train.loop import best_checkpoint, checkpoint_stats

    protocol = EvalProtocol()
    models = {}
    for variant in VARIANTS:
        ckpt = best_checkpoint(run_dir(work, variant))
        if ckpt is not None:
            models[variant] = (ckpt, load_checkpoint(ckpt)[0].eval(), checkpoint_stats(ckpt))
    if not models:
        raise SystemExit(f"no checkpoint under {work / 'runs'}: run the train stage first")
    # Baselines see the same batches as the first model (same slots and keypoints whatever the stats).
    ckpt0, model0, stats0 = next(iter(models.values()))
    bcfg = BatchConfig.for_model(model0.cfg)
    fit = eval_batches(str(work / "traces-train"), stats0, bcfg,
                       protocol.model_copy(update={"slot_offsets": tuple(range(0, 200, 2))}), split="all")
    nn_uv = NearestNeighbour().fit(fit)
    nn_text = NearestNeighbour(embed_text=embed_texts).fit(fit)
    results: dict = {"protocol": protocol.model_dump(mode="json"), "checkpoints": {v: str(m[0]) for v, m in models.items()},
                     "nn_index_keypoints": nn_uv.size, "sets": {}}
    for test in TEST_SETS:
        batches = eval_batches(str(work / f"traces-{test}"), stats0, bcfg, protocol, split="all")
        predictors = {}
        for variant, (_, model, stats) in models.items():
            predictors[variant] = model_predictor(model, stats, protocol.n_samples, seed=0)
            predictors[f"{variant} (mean of {protocol.point_samples})"] = model_predictor(
                model, stats, protocol.n_samples, seed=0, mean_of=protocol.point_samples)
        predictors |= {"zero motion": predict_zero_motion, "constant velocity": predict_constant_velocity,
                       "retrieval (uv)": nn_uv.predict, "retrieval (uv + caption)": nn_text.predict}
        t0 = time.perf_counter()
        with torch.no_grad():
            rows = evaluate_methods(batches, predictors, protocol)
        n_slots = sum(len(b["text"]) for b in batches)
        results["sets"][test] = {"slots": n_slots, "keypoints": n_keypoints_scored(batches), "rows": rows,
                                 "seconds": time.perf_counter() - t0}
        print(f"\n[eval] {test}: {n_slots} slots, {n_keypoints_scored(batches)} keypoints "
              f"(scored in {time.perf_counter() - t0:.0f} s)")
        for h in protocol.horizons:
            print(f"  uvz @{h}: " + "; ".join(f"{r['method']} {r['ade']:.4f}/{r['fde']:.4f}" for r in pivot(rows, "uvz", h)))
    (work / "results.json").write_text(json.dumps(results, indent=1))
    (work / "tables.md").write_text(markdown_tables(results))
    print(f"\nwrote {work / 'results.json'} and {work / 'tables.md'}")
    return results


def stage_points(work: Path) -> None:
    import torch

    from models.checkpoint import load_checkpoint
    from tasks.train.batches import BatchConfig
    from tasks.train.evaluate import EvalProtocol, eval_batches, model_predictor, score
    from tasks.train.loop import best_checkpoint, checkpoint_stats

    ckpt = best_checkpoint(run_dir(work, "mu0-tiny"))
    model, stats = load_checkpoint(ckpt)[0].eval(), checkpoint_stats(ckpt)
    batches = eval_batches(str(work / "traces-train"), stats, BatchConfig.for_model(model.cfg), EvalProtocol(),
                           split="eval", eval_fraction=0.05)
    print(f"[points] {ckpt}: {sum(len(b['text']) for b in batches)} validation slots")
    with torch.no_grad():
        for k in (0, 2, 4, 8, 16):
            m = score(batches, model_predictor(model, stats, 1, seed=0, mean_of=k), 1, (16, 32))
            print(f"  {'one draw' if k == 0 else f'mean of {k}':10s} uvz ADE/FDE@16 {m['uvz/ade@16']:.4f}/{m['uvz/fde@16']:.4f}"
                  f"  @32 {m['uvz/ade@32']:.4f}/{m['uvz/fde@32']:.4f}")


METRIC_COLUMNS = ("ade", "fde", "dtw", "frechet", "minADE5", "minFDE5")


def markdown_tables(results: dict) -> str:
    """One table per (test set, dim, horizon): methods x METRIC_COLUMNS."""
    out = []
    for test, res in results["sets"].items():
        out.append(f"### {test}: {res['slots']} slots, {res['keypoints']} keypoints\n")
        for dim in ("uvz", "uv", "depth"):
            for h in sorted({r["horizon"] for r in res["rows"]}):
                cells: dict[str, dict] = {}
                for r in res["rows"]:
                    if r["dim"] == dim and r["horizon"] == h:
                        cells.setdefault(r["method"], {})[r["metric"]] = r["value"]
                out.append(f"{dim}, horizon {h}:\n")
                out.append("| method | " + " | ".join(METRIC_COLUMNS) + " |")
                out.append("|---|" + "---|" * len(METRIC_COLUMNS))
                for method, vals in cells.items():
                    out.append(f"| {method} | " + " | ".join(f"{vals.get(m, float('nan')):.4f}" for m in METRIC_COLUMNS) + " |")
                out.append("")
    return "\n".join(out)


def stage_curves(work: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.train.loop import read_curve

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for rd in sorted((work / "runs").glob("*/train.json")):
        rd, variant = rd.parent, rd.parent.name
        log = json.loads((rd / "train.json").read_text())["log"]
        curve = read_curve(rd)
        axes[0].plot([r["step"] for r in log], [r["flow"] for r in log], label=variant, alpha=0.8)
        axes[1].plot([r["step"] for r in curve], [r["held_out_loss"] for r in curve], "o-", label=variant)
        axes[2].plot([r["step"] for r in curve], [r["held_out_ade"] for r in curve], "o-", label=variant)
    for ax, title in zip(axes, ("training flow loss (per 50 steps)", "validation flow loss", "validation uvz ADE@32 (1 sample)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"[curves] wrote {out}")


def stage_pictures(work: Path, out_dir: Path, n: int) -> None:
    """`mu0 predict` on the 4th usable slot of the first `n` held-out-task episodes (one per task)."""
    from storage.torch_loader import TraceIndex
    from tasks.train.evaluate import headline_slots
    from tasks.train.loop import best_checkpoint

    root = str(work / "traces-heldout-tasks")
    ckpt = best_checkpoint(run_dir(work, "mu0-tiny"))
    index = headline_slots(TraceIndex.build(root).usable(root, 10, 32), (4,))
    import lance

    names = {r["episode_id"]: r["source_uri"] for r in lance.dataset(f"{root}/episodes.lance").to_table(
        columns=["episode_id", "source_uri"]).to_pylist()}
    seen, done = set(), 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for eid, frame in zip(index.episode_ids.tolist(), index.frames.tolist()):
        task = Path(names.get(eid, eid)).name.rsplit("-", 1)[0]
        if task in seen:
            continue
        seen.add(task)
        mu0("predict", "--checkpoint", str(ckpt), "--dataset", root, "--episode", eid, "--frame", str(frame),
            "--out", str(out_dir / f"predict-{task}.png"), "--device", "cpu")
        done += 1
        if done >= n:
            break


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("bench-generalisation"))
    ap.add_argument("--stages", default="corpus,ingest,train,eval,curves")
    ap.add_argument("--variant", default="mu0-tiny", choices=sorted(VARIANTS))
    ap.add_argument("--run-name", default=None, help="runs/<name> (default: the variant's name; eval reads those)")
    ap.add_argument("--max-steps", type=int, default=80, help="frames per rendered episode at most")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-keypoints", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--curves", type=Path, default=Path("docs/benchmarks/generalisation-curves.png"))
    ap.add_argument("--pictures", type=Path, default=Path("docs/benchmarks"))
    ap.add_argument("--n-pictures", type=int, default=4)
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    args.work.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        if stage == "corpus":
            stage_corpus(args.work, args.max_steps)
        elif stage == "ingest":
            stage_ingest(args.work)
        elif stage == "train":
            stage_train(args.work, args.variant, args)
        elif stage == "eval":
            stage_eval(args.work)
        elif stage == "points":
            stage_points(args.work)
        elif stage == "curves":
            stage_curves(args.work, args.curves)
        elif stage == "pictures":
            stage_pictures(args.work, args.pictures, args.n_pictures)
        else:
            raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    main()
