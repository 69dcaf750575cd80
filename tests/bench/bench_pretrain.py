"""Benchmark: pretrain mu0-tiny on a sim corpus and evaluate it against the baselines (CPU).

    python -m tests.bench.bench_pretrain --work bench-pretrain                # all stages
    python -m tests.bench.bench_pretrain --work bench-pretrain --stages eval  # reuse corpus, data, checkpoint

Stages (each reuses what exists under --work): `corpus` renders the training corpus (>= 100 episodes
over the five Meta-World tasks, seeds 0..) and a held-out corpus (seeds from --eval-seed); `ingest`
extracts both into Lance datasets (sequential runner, one commit per table); `train` pretrains
mu0-tiny (resuming a checkpoint in --work/run if present); `eval` scores the last checkpoint and the
three baselines on the held-out dataset (split "all": the held-out seeds are the test set), the
nearest neighbour fitted on the training dataset. Prints the uvz table at horizon 32, training
time and steps/s, and writes everything to --work/results.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TASKS = ["pick-place", "drawer-open", "button-press", "push", "reach"]


def ingest_sequential(corpus: str | Path, dataset: str | Path, preset: str = "sim") -> dict[str, int]:
    """Ingest a corpus in this process (no Prefect, no Ray); episode counts by status."""
    from tasks.config import get_preset
    from tasks.run.ingest import ingest

    report = ingest(str(corpus), str(dataset), get_preset(preset))
    return {"ok": report.ok, "rejected": report.rejected, "failed": report.failed}


def stage_corpus(work: Path, n_train: int, n_eval: int, eval_seed: int, max_steps: int) -> None:
    from tasks.sim.generate import generate_corpus

    for name, n, seed in (("corpus-train", n_train, 0), ("corpus-eval", n_eval, eval_seed)):
        out = work / name
        if out.is_dir() and sum(p.is_dir() for p in out.iterdir()) >= n:
            print(f"[corpus] reuse {out}")
            continue
        t0 = time.perf_counter()
        generate_corpus(out, n, TASKS, camera="static", seed=seed, max_steps=max_steps)
        print(f"[corpus] {n} episodes -> {out} in {time.perf_counter() - t0:.0f} s")


def stage_ingest(work: Path) -> None:
    for name in ("train", "eval"):
        ds = work / f"traces-{name}"
        if (ds / "samples.lance").is_dir():
            print(f"[ingest] reuse {ds}")
            continue
        t0 = time.perf_counter()
        counts = ingest_sequential(work / f"corpus-{name}", ds)
        print(f"[ingest] {name}: {counts} in {time.perf_counter() - t0:.0f} s")


def stage_train(work: Path, steps: int, batch_size: int, max_keypoints: int, seed: int) -> dict:
    from flows.pretrain import pretrain
    from tasks.train.config import PretrainConfig

    cfg = PretrainConfig(model_preset="mu0-tiny", steps=steps, batch_size=batch_size, max_keypoints=max_keypoints,
                         eval_fraction=0.0, seed=seed, checkpoint_every=max(100, steps // 5), log_every=max(1, steps // 50),
                         out_dir=str(work / "run"), device="cpu")
    report = pretrain(str(work / "traces-train"), cfg)
    print(f"[train] steps {report.start_step} -> {report.final_step} in {report.seconds:.0f} s, {report.steps_per_s:.3f} steps/s")
    return report.model_dump()


def stage_eval(work: Path, text_embedding: bool) -> list[dict]:
    """The headline protocol on the held-out dataset; the NN baseline indexes the training dataset."""
    import torch

    from models.checkpoint import load_checkpoint
    from tasks.train.baselines import NearestNeighbour, predict_constant_velocity, predict_zero_motion
    from tasks.train.batches import BatchConfig
    from tasks.train.evaluate import EvalProtocol, eval_batches, evaluate_methods, model_predictor, n_keypoints_scored, pivot
    from models.checkpoint import latest_checkpoint
    from tasks.train.loop import checkpoint_stats

    ckpt = latest_checkpoint(work / "run")
    if ckpt is None:
        raise SystemExit(f"no checkpoint under {work / 'run'}: run the train stage first")
    model = load_checkpoint(ckpt)[0].eval()
    stats = checkpoint_stats(ckpt)
    bcfg = BatchConfig.for_model(model.cfg)
    protocol = EvalProtocol()
    test = eval_batches(str(work / "traces-eval"), stats, bcfg, protocol, split="all")
    fit = eval_batches(str(work / "traces-train"), stats, bcfg, protocol.model_copy(update={"slot_offsets": tuple(range(0, 200, 2))}),
                       split="all")
    embed = None
    if text_embedding:
        from models.text_embedder import embed_texts

        embed = embed_texts
    nn = NearestNeighbour(embed_text=embed).fit(fit)
    print(f"[eval] {ckpt.name}: {sum(len(b['text']) for b in test)} test slots, {n_keypoints_scored(test)} keypoints; "
          f"NN index {nn.size} training keypoints")
    t0 = time.perf_counter()
    with torch.no_grad():
        rows = evaluate_methods(test, {"mu0-tiny": model_predictor(model, stats, protocol.n_samples, seed=0),
                                       "zero_motion": predict_zero_motion,
                                       "constant_velocity": predict_constant_velocity,
                                       "nearest_neighbour": nn.predict}, protocol)
    print(f"[eval] scored in {time.perf_counter() - t0:.0f} s")
    print(f"{'method':20s} {'ADE@32 uvz':>12s} {'FDE@32 uvz':>12s}")
    for r in pivot(rows, "uvz", 32):
        print(f"{r['method']:20s} {r['ade']:12.4f} {r['fde']:12.4f}")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("bench-pretrain"))
    ap.add_argument("--stages", default="corpus,ingest,train,eval")
    ap.add_argument("--episodes", type=int, default=100, help="training episodes (>= 100 for the record)")
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--eval-seed", type=int, default=10_000, help="first seed of the held-out corpus")
    ap.add_argument("--max-steps", type=int, default=80, help="frames per episode at most")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-keypoints", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-text-embedding", action="store_true", help="NN keys on uv only")
    args = ap.parse_args(argv)
    stages = {s.strip() for s in args.stages.split(",")}
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "corpus" in stages:
        stage_corpus(args.work, args.episodes, args.eval_episodes, args.eval_seed, args.max_steps)
    if "ingest" in stages:
        stage_ingest(args.work)
    if "train" in stages:
        results["train"] = stage_train(args.work, args.steps, args.batch_size, args.max_keypoints, args.seed)
        results["train"].pop("log", None)
    if "eval" in stages:
        results["eval"] = stage_eval(args.work, not args.no_text_embedding)
    if "train" in results:
        t = results["train"]
        print(f"training: {t['final_step'] - t['start_step']} steps in {t['seconds']:.0f} s = {t['steps_per_s']:.3f} steps/s")
    results_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
