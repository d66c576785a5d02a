"""``python -m kws sweep``: a grid over one compression option, as real training runs.

Each point is a ``python -m kws fit`` run (fine-tuning a trained float checkpoint with the
compression callback added to the config), tested on the final -- compressed -- model. The
sweep writes ``results.csv``, plots and a summary, and logs them to W&B (offline by default).

Studies:
- ``bits``: weight/activation bits 8, 6, 4, 3, 2 with QAT (a fine-tuning run each) and with
  post-training quantization of the float checkpoint (calibrated on training clips), plus the
  float model fine-tuned for the same epochs as the reference.
- ``sparsity``: unstructured global magnitude pruning, 0-90 % in 10 % steps, one-shot vs gradual.
- ``norms``: structured channel pruning of 25, 50 and 75 % of the conv channels, ranked by L1,
  L2 or L-inf.
- ``structured``: structured L1 channel pruning 0, 25, 50, 75 %: accuracy, parameters, FLOPs and
  CPU latency of the physically smaller model.

Example::

    python -m kws fit --config conf.yaml                          # the float model
    python -m kws sweep --study bits --init_from runs/csv/version_0/checkpoints/final.ckpt
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

STUDIES = ("bits", "sparsity", "norms", "structured")
# The quantization scheme of both PTQ and QAT points: TFLite int8's (symmetric per-channel
# weights, asymmetric per-tensor activations) at every bit width.
# quantize_output off: the bits study was measured with float logits (README); at 2 bits they would have
# 4 levels.
QUANT = dict(mode="symmetric", activation_mode="asymmetric", per_channel=True, quantize_output=False)


def _callback(class_path: str, **init_args) -> dict:
    return {"class_path": class_path, "init_args": init_args}


def study_points(study: str, epochs: int) -> list[tuple[dict, dict]]:
    """(row labels, compression callback config) of each training run of a study."""
    end = max(1, epochs * 2 // 3)  # prune over the first two thirds, fine-tune for the rest
    if study == "bits":
        # The float model fine-tuned for the same epochs is the fair reference for QAT.
        return [({"method": "float", "bits": 32}, None)] + [
            (
                {"method": "qat", "bits": b},
                _callback(
                    "callbacks.QuantizationAwareTraining", **QUANT, weight_bits=b, activation_bits=b, start_epoch=0
                ),
            )
            for b in (8, 6, 4, 3, 2)
        ]
    if study == "sparsity":
        points = []
        for schedule in ("one_shot", "gradual"):
            for tenth in range(10):
                cfg = dict(amount=tenth / 10, method="unstructured", scope="global", schedule=schedule, start_epoch=0)
                if schedule == "gradual":
                    cfg["end_epoch"] = end
                points.append(({"schedule": schedule, "sparsity": tenth / 10}, _callback("callbacks.Pruning", **cfg)))
        return points
    if study == "norms":
        return [
            (
                {"norm": norm, "channel_fraction": k / 8},
                _callback(
                    "callbacks.Pruning",
                    amount=k / 8,
                    method="structured",
                    norm=norm,
                    schedule="gradual",
                    start_epoch=0,
                    end_epoch=end,
                ),
            )
            for norm in ("L1", "L2", "Linf")
            for k in (2, 4, 6)
        ]
    if study == "structured":
        return [
            (
                {"channel_fraction": f},
                _callback(
                    "callbacks.Pruning",
                    amount=f,
                    method="structured",
                    norm="L1",
                    schedule="gradual",
                    start_epoch=0,
                    end_epoch=end,
                ),
            )
            for f in (0.0, 0.25, 0.5, 0.75)
        ]
    raise ValueError(f"unknown study {study!r}; choose one of {', '.join(STUDIES)}")


def run_point(name: str, callback: dict | None, args, out: Path) -> dict:
    """One fine-tuning run in its own folder; returns its test results and model size."""
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(Path(args.config).read_text())
    overlay = {
        "trainer": {
            "max_epochs": args.epochs,
            "callbacks": copy.deepcopy(config["trainer"].get("callbacks", [])) + ([callback] if callback else []),
        },
        "model": {"init_from": str(Path(args.init_from).resolve())},
        "data": {"data_dir": str(Path(config["data"]["data_dir"]).resolve())},
        "test_ckpt": "final",
    }
    (run_dir / "overlay.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    cmd = [sys.executable, "-m", "kws", "fit", "--config", str(Path(args.config).resolve()), "--config", "overlay.yaml"]
    env = {**os.environ, "WANDB_RUN_GROUP": f"sweep-{args.study}"}
    start = time.time()
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run(cmd, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise RuntimeError(f"sweep point {name} failed; see {run_dir / 'log.txt'}")
    version = max((run_dir / "runs" / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    results = json.loads((version / "test_results.json").read_text())
    checkpoint = version / "checkpoints" / "final.ckpt"
    return {
        "test_acc": results["accuracy"],
        **model_size(checkpoint),
        "train_s": round(time.time() - start, 1),
        "checkpoint": str(checkpoint),
    }


def model_size(checkpoint: Path) -> dict:
    from kws.tools.profile import count_flops, count_parameters, module_input_shape
    from kws.training.checkpoints import load_module
    from kws.utils.timing import latency_ms

    module = load_module(checkpoint)[0].eval()
    shape = module_input_shape(module)
    return {
        **count_parameters(module.model),
        "flops": count_flops(module.model, shape),
        # batch 1 is mostly framework overhead on a CPU; a large batch shows the compute saved
        "cpu_latency_ms": round(latency_ms(module.model, shape), 4),
        "cpu_latency_ms_batch256": round(latency_ms(module.model, shape, batch=256), 3),
    }


def evaluation_batches(args) -> tuple[list, list]:
    """Calibration (``args.calibration_clips`` training clips) and test features, without
    augmentation, as (features, labels) batches of tensors."""
    import torch

    from datamodules import SpeechCommandsDataModule
    from kws.training.checkpoints import config_section, read_config

    dm = SpeechCommandsDataModule(**config_section(read_config(args.config), "data", args.config))
    dm.prepare_data()
    dm.setup()
    batches = []
    for split, clips in (("training", args.calibration_clips), ("testing", None)):
        x, y = dm.split_features(split, clips)
        batches.append(
            list(
                zip(torch.from_numpy(x).split(dm.hparams.batch_size), torch.from_numpy(y).split(dm.hparams.batch_size))
            )
        )
    return batches[0], batches[1]


def ptq_points(float_model, calibration: list, test: list, bits: list[int]) -> list[dict]:
    """Post-training quantization of the float model at each bit width, on the test split."""
    from kws.compression.quantization import compare_models, post_training_quantize

    rows = []
    for b in bits:
        quant = post_training_quantize(float_model, calibration, **QUANT, weight_bits=b, activation_bits=b)
        cmp = compare_models(float_model, quant, test)
        rows.append(
            {
                "method": "ptq",
                "bits": b,
                "test_acc": cmp["quant_acc"],
                "agreement": cmp["agreement"],
                "prob_mse": cmp["prob_mse"],
            }
        )
    return rows


def accuracy(model, batches: list) -> float:
    """Test accuracy of ``model`` on (features, labels) batches."""
    import torch

    from kws.utils.metrics import accuracy as top1

    model.eval()
    with torch.no_grad():
        return top1(torch.cat([model(x) for x, _ in batches]), torch.cat([y for _, y in batches]))


def plot(study: str, rows: list[dict], out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11 if study == "structured" else 6, 4.2), dpi=100)
    if study == "bits":
        ax = fig.subplots()
        for method in ("ptq", "qat"):
            pts = sorted((int(r["bits"]), 100 * float(r["test_acc"])) for r in rows if r["method"] == method)
            ax.plot(*zip(*pts), "o-", label=method.upper())
        tuned = [r for r in rows if r["method"] == "float"]
        ax.axhline(100 * float(rows[0]["float_reference"]), color="gray", ls="--", label="float (initial)")
        if tuned:
            ax.axhline(100 * float(tuned[0]["test_acc"]), color="black", ls=":", label="float (fine-tuned alike)")
        ax.set(
            xlabel="bits (weights and activations)", ylabel="test accuracy (%)", title="Accuracy vs bits: PTQ vs QAT"
        )
    elif study in ("sparsity", "norms"):
        ax = fig.subplots()
        key, x = ("schedule", "sparsity") if study == "sparsity" else ("norm", "channel_fraction")
        for group in dict.fromkeys(r[key] for r in rows):
            pts = sorted((100 * float(r[x]), 100 * float(r["test_acc"])) for r in rows if r[key] == group)
            ax.plot(*zip(*pts), "o-", label=group)
        ax.axhline(100 * float(rows[0]["float_reference"]), color="gray", ls="--", label="float (initial)")
        ax.set(
            xlabel=f"{x.replace('_', ' ')} (%)", ylabel="test accuracy (%)", title=f"Accuracy vs {x.replace('_', ' ')}"
        )
    else:
        ax, ax2 = fig.subplots(1, 2)
        pts = sorted(
            (
                int(r["parameters"]),
                100 * float(r["test_acc"]),
                float(r["cpu_latency_ms"]),
                float(r["cpu_latency_ms_batch256"]) / 256,
            )
            for r in rows
        )
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
        ax.set(xlabel="parameters", ylabel="test accuracy (%)", title="Structured pruning: accuracy vs parameters")
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label="batch 1")
        ax2.plot([p[0] for p in pts], [p[3] for p in pts], "s-", label="per clip in a batch of 256")
        ax2.set(xlabel="parameters", ylabel="CPU latency (ms)", title="Latency vs parameters")
    for a in fig.axes:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    path = out / f"{study}.png"
    fig.savefig(path)
    return path


def write_results(rows: list[dict], out: Path) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(study: str, rows: list[dict]) -> str:
    """The study's results as the markdown table the README shows."""
    pct = lambda v: f"{100 * float(v):.2f} %"  # noqa: E731
    if study == "bits":
        by = {(r["method"], int(r["bits"])): r for r in rows}
        lines = ["| bits | PTQ | PTQ agreement with float | QAT |", "|---:|---:|---:|---:|"]
        for b in (8, 6, 4, 3, 2):
            ptq, qat = by.get(("ptq", b)), by.get(("qat", b))
            lines.append(
                f"| {b} | {pct(ptq['test_acc']) if ptq else '-'} | {pct(ptq['agreement']) if ptq else '-'} | "
                f"{pct(qat['test_acc']) if qat else '-'} |"
            )
        tuned = by.get(("float", 32))
        lines.append(
            f"| float | {pct(rows[0]['float_reference'])} (as trained) | | "
            f"{pct(tuned['test_acc']) if tuned else '-'} (fine-tuned alike) |"
        )
        return "\n".join(lines)
    if study in ("sparsity", "norms"):
        key, x = ("schedule", "sparsity") if study == "sparsity" else ("norm", "channel_fraction")
        groups = list(dict.fromkeys(r[key] for r in rows))
        xs = sorted({float(r[x]) for r in rows})
        by = {(r[key], float(r[x])): r for r in rows}
        lines = [f"| {x.replace('_', ' ')} | " + " | ".join(groups) + " |", "|---:|" + "---:|" * len(groups)]
        for v in xs:
            lines.append(
                f"| {100 * v:.1f} % | "
                + " | ".join(pct(by[(g, v)]["test_acc"]) if (g, v) in by else "-" for g in groups)
                + " |"
            )
        return "\n".join(lines)
    lines = [
        "| channels pruned | test accuracy | parameters | FLOPs | CPU latency, batch 1 | CPU latency, batch 256 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: float(r["channel_fraction"])):
        lines.append(
            f"| {100 * float(r['channel_fraction']):.0f} % | {pct(r['test_acc'])} | "
            f"{int(r['parameters']):,} | {int(r['flops']):,} | "
            f"{float(r['cpu_latency_ms']):.3f} ms | {float(r.get('cpu_latency_ms_batch256') or 'nan'):.2f} ms |"
        )
    return "\n".join(lines)


def log_to_wandb(study: str, rows: list[dict], plot_path: Path, out: Path) -> None:
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")
    run = wandb.init(
        project="kws", group=f"sweep-{study}", name=f"sweep-{study}", dir=str(out), mode=mode, reinit="finish_previous"
    )
    columns = list(dict.fromkeys(k for r in rows for k in r))
    run.log(
        {
            f"sweep/{study}": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows]),
            f"sweep/{study}_plot": wandb.Image(str(plot_path)),
        }
    )
    run.finish()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m kws sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, choices=STUDIES)
    parser.add_argument("--config", default="conf.yaml")
    parser.add_argument("--init_from", help="trained float checkpoint each point fine-tunes (required unless --report)")
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs per point")
    parser.add_argument("--calibration_clips", type=int, default=1000, help="training clips that calibrate PTQ")
    parser.add_argument("--out", default=None, help="output folder (default runs/sweeps/<study>)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="print the table of a finished sweep's results.csv and redraw its plot; train nothing",
    )
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="measure size, FLOPs and latency of a finished sweep's checkpoints again (e.g. on an idle machine), "
        "update results.csv and the plot",
    )
    args = parser.parse_args(argv)
    if args.report or args.remeasure:
        out = Path(args.out or f"runs/sweeps/{args.study}")
        if not (out / "results.csv").is_file():
            parser.error(f"no results in {out}: run the sweep first")
        rows = list(csv.DictReader(open(out / "results.csv")))
        if args.remeasure:
            rows = [{**r, **model_size(Path(r["checkpoint"]))} if r.get("checkpoint") else r for r in rows]
            write_results(rows, out)
        plot(args.study, rows, out)
        print(markdown_table(args.study, rows))
        return rows
    if not args.init_from or not Path(args.init_from).is_file():
        parser.error(
            f"--init_from {args.init_from}: no such checkpoint; train a float model first (python -m kws "
            f"fit --config {args.config})"
        )
    out = Path(args.out or f"runs/sweeps/{args.study}").resolve()
    out.mkdir(parents=True, exist_ok=True)

    from kws.training.checkpoints import load_module

    float_model = load_module(args.init_from)[0].model.eval()
    calibration, test = evaluation_batches(args)
    float_acc = accuracy(float_model, test)
    print(f"float model {args.init_from}: test accuracy {100 * float_acc:.2f} %")
    rows = ptq_points(float_model, calibration, test, [8, 6, 4, 3, 2]) if args.study == "bits" else []
    points = study_points(args.study, args.epochs)
    for i, (labels, callback) in enumerate(points, 1):
        name = "-".join(f"{k}{v}" for k, v in labels.items())
        print(f"[{i}/{len(points)}] {name} ...", flush=True)
        row = {**labels, **run_point(name, callback, args, out)}
        print(
            f"    test accuracy {100 * row['test_acc']:.2f} %, {row['nonzero_parameters']} nonzero of "
            f"{row['parameters']} parameters",
            flush=True,
        )
        rows.append(row)
    for r in rows:
        r["float_reference"] = float_acc
    write_results(rows, out)
    plot_path = plot(args.study, rows, out)
    log_to_wandb(args.study, rows, plot_path, out)
    print(f"\n{markdown_table(args.study, rows)}\n\n{args.study}: {out / 'results.csv'}, {plot_path}")
    return rows
