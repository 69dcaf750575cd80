"""Benchmark: downstream policies in closed loop on Meta-World, trained on the same demonstrations (CPU).

    python -m tests.bench.bench_policies --work W                       # the full protocol (hours on 2 cores)
    python -m tests.bench.bench_policies --work W --demos 10 --steps 1000 --episodes 10 --max-steps 200

Rows, as in the paper's comparison (docs/method.md#downstream-action-expert):
(a) `mu0-ae`: μ0 + action expert (policy-tiny on the frozen μ0 given by --mu0, traces on);
(b) `vlm-ae`: the same without traces (`--no-traces`: the 'VLM + action expert' ablation);
(c) `pi0`: the π0-style baseline (`--preset pi0-tiny`: PaliGemma + Gemma expert, everything trained, no μ0);
(d) `scripted`: Meta-World's scripted expert, the ceiling the demonstrations came from.
(a)-(c) see the same demonstrations, recipe, batch and number of optimisation steps.

Stages (each reuses what exists under --work): `mu0 sim` renders --demos demonstrations per task of
TASKS (seeds 0..) and --val-demos validation demonstrations (seeds 5000..), `mu0 ingest --preset sim
--sequential` makes both datasets, `mu0 finetune` trains each row at every learning rate of --lrs, the
one with the lowest action error on the validation demonstrations (tasks/policy/validate.py) is kept
per row, and `mu0 rollout` runs it for --episodes episodes per task on unseen seeds (--seed..) on Ray.
With --train-seeds 0,1 every trained row is trained (and its learning rate chosen) at each seed of
initialisation and data order, and each is rolled out: one seed's gap between two rows can be seed noise.
Prints success per task and pooled over tasks with 95% Wilson intervals, and the wall time of every
training run and rollout batch; writes everything to --work/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tasks.config import parse_assignments

TASKS = ["reach", "button-press", "drawer-open", "pick-place"]
ROWS: dict[str, tuple[str, list[str] | None]] = {  # name -> (label, `mu0 finetune` flags; None: no training)
    "mu0-ae": ("μ0 + action expert", ["--preset", "policy-tiny"]),
    "vlm-ae": ("VLM + action expert (no traces)", ["--preset", "policy-tiny", "--no-traces"]),
    "pi0": ("π0-style baseline (pi0-tiny)", ["--preset", "pi0-tiny"]),
    "scripted": ("scripted expert", None),
}
DEFAULT_MU0 = "/work/bench14/runs/mu0-tiny"
VAL_SEED = 5000  # validation demonstrations: seeds the training demonstrations (0..) and rollouts (100000..) never use


def mu0(log: Path, *args: str, threads: int | None = None) -> tuple[float, str]:
    """The user-facing CLI in a child process, its output shown and kept in `log`; (wall seconds, output).

    `threads` caps torch's intra-op threads (OMP_NUM_THREADS): the tiny models gain little from a second thread,
    and on a 2-core box whose other core is busy two threads stall each other (measured: 0.2 vs 7 steps/s).
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print("$ mu0 " + " ".join(args), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
    if proc.wait():
        raise SystemExit(f"mu0 {args[0]} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - t0, log.read_text()


def mu0_checkpoint(path: str) -> Path:
    """A step directory as is; a pretrain run directory -> its best checkpoint by held-out loss."""
    from tasks.train.loop import best_checkpoint

    p = Path(path)
    best = p if (p / "trainer_state.json").exists() else best_checkpoint(p)
    if best is None:
        raise SystemExit(f"--mu0 {path}: no μ0 checkpoint there (a step directory or a `mu0 pretrain` run)")
    return best.resolve()


def stage_corpus(work: Path, args: argparse.Namespace) -> float | None:
    out = work / "corpus"
    n = args.demos * len(TASKS)
    want = {f"{TASKS[i % len(TASKS)]}-{i:05d}" for i in range(n)}
    if out.is_dir() and want <= {p.name for p in out.iterdir()}:
        print(f"[corpus] reuse {out}")
        return None
    wall, _ = mu0(work / "logs" / "sim.log", "sim", "--out", str(out), "--episodes", str(n), "--tasks", ",".join(TASKS),
                  "--camera", "static", "--seed", "0", "--max-steps", str(args.demo_max_steps))
    return wall


def stage_val_corpus(work: Path, args: argparse.Namespace) -> None:
    out = work / "val-corpus"
    if out.is_dir() and len(list(out.iterdir())) >= args.val_demos * len(TASKS):
        print(f"[val-corpus] reuse {out}")
        return
    mu0(work / "logs" / "sim-val.log", "sim", "--out", str(out), "--episodes", str(args.val_demos * len(TASKS)),
        "--tasks", ",".join(TASKS), "--camera", "static", "--seed", str(VAL_SEED), "--max-steps", str(args.demo_max_steps))


def stage_ingest(work: Path, corpus: str = "corpus", dataset: str = "traces") -> float | None:
    """`mu0 ingest` of a corpus; a dataset that already holds as many episodes as the corpus is reused as it is
    (ingest would add the same videos again under new ids once the extraction settings change)."""
    from storage.dataset import open_table

    eps = open_table(str(work / dataset), "episodes") if (work / dataset).is_dir() else None
    if eps is not None and eps.count_rows() >= len(list((work / corpus).iterdir())):
        print(f"[ingest] reuse {work / dataset}")
        return None
    wall, _ = mu0(work / "logs" / f"ingest-{dataset}.log", "ingest", str(work / corpus), "--dataset", str(work / dataset),
                  "--preset", "sim", "--sequential")
    return wall


def _train_info(output: str, final: Path, wall: float, args: argparse.Namespace, mu0_ckpt: Path | None) -> dict:
    losses = re.findall(r"step (\d+)\s+loss=([0-9.eE+-]+)", output)
    done = re.search(r"steps (\d+) -> (\d+) in ([0-9.]+) s", output)
    return {"checkpoint": str(final), "wall_s": wall, "train_s": float(done.group(3)) if done else None,
            "steps": args.steps, "start_step": int(done.group(1)) if done else None,
            "final_loss": float(losses[-1][1]) if losses else None, "mu0_checkpoint": str(mu0_ckpt) if mu0_ckpt else None}


def seed_suffix(seed: int) -> str:
    """Run and rollout names of a training seed: none for seed 0 (the names runs had before seeds were a flag)."""
    return f"-seed{seed}" if seed else ""


def variant_suffix(row: str, args: argparse.Namespace) -> str:
    """Run and rollout names of a μ0 row trained with `--set` fields, e.g. "-grid16": variants share one work dir."""
    if not (ROWS[row][1] and "policy-tiny" in ROWS[row][1]):
        return ""
    return "".join(f"-{k}{v}" for k, v in parse_assignments(args.set).items())


def stage_train(work: Path, row: str, lr: str, args: argparse.Namespace, mu0_ckpt: Path, seed: int = 0) -> dict:
    """Finetune one row at one learning rate and training seed (resumed, or reused when its last checkpoint exists);
    wall time, last loss.

    A run made by hand with the same command (`work/runs/<row>-lr<lr>[-seed<s>]`, its output in
    `work/logs/train-<same>.log`) is reused too: its wall time is then the training time the log reports.
    """
    name = f"{row}{variant_suffix(row, args)}-lr{lr}{seed_suffix(seed)}"
    out, log = work / "runs" / name, work / "logs" / f"train-{name}.log"
    info_file = out / "bench.json"
    final = out / f"step-{args.steps:06d}"
    if final.is_dir() and info_file.exists():
        print(f"[train] reuse {final}")
        return json.loads(info_file.read_text())
    on_mu0 = "policy-tiny" in ROWS[row][1]
    flags = ROWS[row][1] + (["--mu0", str(mu0_ckpt)] + [a for kv in args.set for a in ("--set", kv)] if on_mu0 else [])
    ckpt = mu0_ckpt if "--mu0" in flags else None
    if final.is_dir() and log.exists():
        info = _train_info(log.read_text(), final, float("nan"), args, ckpt)
        info["wall_s"] = info["train_s"]
    else:
        wall, output = mu0(log, "finetune", str(work / "traces"), "--out", str(out), *flags, "--lr", lr,
                           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--demos-per-task", str(args.demos),
                           "--tasks", ",".join(TASKS), "--checkpoint-every", str(args.steps), "--log-every", "50",
                           "--device", "cpu", "--seed", str(seed), threads=args.threads)
        info = _train_info(output, final, wall, args, ckpt)
    info["seed"] = seed
    info_file.write_text(json.dumps(info, indent=1))
    return info


def stage_validate(work: Path, train: dict) -> dict:
    """Action error of a trained checkpoint on the validation demonstrations (cached beside the checkpoint)."""
    from tasks.policy.validate import action_error

    cache = Path(train["checkpoint"]) / "val_error.json"
    if cache.exists():
        return json.loads(cache.read_text())
    err = action_error(train["checkpoint"], str(work / "val"), TASKS)
    cache.write_text(json.dumps(err, indent=1))
    return err


def choose_lr(work: Path, row: str, args: argparse.Namespace, mu0_ckpt: Path, seed: int = 0) -> tuple[dict, dict]:
    """(the chosen run's training info, {lr: {"train", "val"}}): the lowest validation action error wins."""
    sweep = {}
    for lr in _csv(args.lrs):
        train = stage_train(work, row, lr, args, mu0_ckpt, seed)
        sweep[lr] = {"train": train, "val": stage_validate(work, train)}
        print(f"[validate] {row} seed {seed} lr {lr}: action error {sweep[lr]['val']['all']['mse']:.3f} "
              f"(mean predictor {sweep[lr]['val']['all']['mean_mse']:.3f})", flush=True)
    best = min(sweep, key=lambda lr: sweep[lr]["val"]["all"]["mse"])
    return {**sweep[best]["train"], "lr": best}, sweep


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def stage_rollout(work: Path, row: str, args: argparse.Namespace, ckpt: str | None) -> dict:
    """`mu0 rollout` of one row (`<row>[-seed<s>]`) on the unseen seeds (reused when the same episodes were already run)."""
    out = work / "eval" / row
    info_file = out / "bench.json"
    key = {"episodes": args.episodes, "seed": args.seed, "max_steps": args.max_steps, "checkpoint": ckpt}
    if info_file.exists() and json.loads(info_file.read_text()).get("key") == key:
        print(f"[rollout] reuse {out}")
        return json.loads(info_file.read_text())
    policy = ["--checkpoint", ckpt] if ckpt else ["--policy", "scripted"]
    steps = ["--max-steps", str(args.max_steps)] if args.max_steps else []
    wall, _ = mu0(work / "logs" / f"rollout-{row}.log", "rollout", *policy, "--task", ",".join(TASKS), "--episodes",
                  str(args.episodes), "--seed", str(args.seed), *steps, "--out", str(out), "--videos", str(args.videos),
                  "--runner", "ray", "--num-cpus", str(args.num_cpus))
    summary = json.loads((out / "summary.json").read_text())
    info = {"key": key, "wall_s": wall, "episodes_s": summary["episodes_s"], "setup_s": summary["setup_s"],
            "rates": summary["rates"]}
    info_file.write_text(json.dumps(info, indent=1))
    return info


def cell(rate: dict) -> str:
    return f"{rate['rate']:.0%} [{rate['ci_low']:.0%}-{rate['ci_high']:.0%}]"


def print_table(results: dict) -> None:
    cols = TASKS + ["all"]
    print("\nsuccess rate [95% Wilson interval], " + f"{results['settings']['episodes']} episodes per task, "
          f"seeds {results['settings']['seed']}..")
    head = ["policy"] + [c if c != "all" else "mean (pooled)" for c in cols] + ["lr (val error)", "train wall s", "rollout wall s"]
    lines = []
    for res in results["rows"].values():
        rates = {r["task"]: r for r in res["rollout"]["rates"]}
        train = res.get("train")
        val = f"{train['lr']} ({res['lr_sweep'][train['lr']]['val']['all']['mse']:.3f})" if train else "-"
        label = res["label"] + (f", seed {res['seed']}" if res.get("seed") else "")
        lines.append([label] + [cell(rates[c]) for c in cols]
                     + [val, f"{train['wall_s']:.0f}" if train else "-", f"{res['rollout']['wall_s']:.0f}"])
    for row in ROWS:  # rows trained at several seeds: the spread a single seed hides
        pooled = [res["rollout"]["rates"] for res in results["rows"].values() if res["row"] == row]
        if len(pooled) > 1:
            means = [next(r["rate"] for r in rates if r["task"] == "all") for rates in pooled]
            lines.append([f"{ROWS[row][0]}, mean of {len(means)} seeds"] + [""] * len(TASKS)
                         + [f"{sum(means) / len(means):.1%} (seeds {min(means):.1%}-{max(means):.1%})", "", "", ""])
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    for line in [head, ["-" * w for w in widths], *lines]:
        print(" | ".join(x.ljust(w) for x, w in zip(line, widths)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--mu0", default=DEFAULT_MU0, help="frozen μ0: a step directory, or a pretrain run (its best checkpoint)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    ap.add_argument("--demos", type=int, default=20, help="demonstrations per task (seeds 0..)")
    ap.add_argument("--demo-max-steps", type=int, default=120, help="frames per demonstration at most (`mu0 sim --max-steps`)")
    ap.add_argument("--val-demos", type=int, default=5, help="validation demonstrations per task (seeds 5000..)")
    ap.add_argument("--lrs", default="1e-4,3e-4,1e-3", help="learning rates tried for every trained row (chosen on validation)")
    ap.add_argument("--steps", type=int, default=2000, help="optimisation steps of every trained row")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--episodes", type=int, default=50, help="rollouts per task")
    ap.add_argument("--seed", type=int, default=100_000, help="first rollout seed (unseen: demonstrations use 0..)")
    ap.add_argument("--max-steps", type=int, default=None, help="env steps per rollout at most (default: the env's 500)")
    ap.add_argument("--videos", type=int, default=0, help="MP4s per task and outcome")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray the rollouts run on")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of each training run (default: torch's)")
    ap.add_argument("--train-seeds", default="0", help="seeds of initialisation and data order; every trained row runs at each")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a policy-tiny field for the μ0 rows (e.g. grid=16), repeatable; their runs and rollouts are named "
                         "after it (mu0-ae-grid16-lr1e-3), so variants share the work dir and its demonstrations")
    args = ap.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    needs_mu0 = any(ROWS[r][1] and "policy-tiny" in ROWS[r][1] for r in rows)
    mu0_ckpt = mu0_checkpoint(args.mu0) if needs_mu0 else None
    results = {"settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                            "tasks": TASKS, "mu0_checkpoint": str(mu0_ckpt) if mu0_ckpt else None}, "rows": {}}
    if any(ROWS[r][1] for r in rows):
        results["corpus_wall_s"] = stage_corpus(work, args)
        results["ingest_wall_s"] = stage_ingest(work)
        stage_val_corpus(work, args)
        stage_ingest(work, "val-corpus", "val")
    for row in rows:
        for seed in [int(s) for s in _csv(args.train_seeds)] if ROWS[row][1] else [0]:
            train, sweep = choose_lr(work, row, args, mu0_ckpt, seed) if ROWS[row][1] else (None, None)
            name = row + variant_suffix(row, args) + seed_suffix(seed)
            results["rows"][name] = {"row": row, "seed": seed, "label": ROWS[row][0], "train": train, "lr_sweep": sweep,
                                     "rollout": stage_rollout(work, name, args, train["checkpoint"] if train else None)}
            (work / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\nresults: {work / 'results.json'}")


if __name__ == "__main__":
    main()
