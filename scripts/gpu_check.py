"""The GPU check of tracker issue 22 (docs/gpu.md): six stages, each writing its JSON into --out as
it finishes, a summary table last. On a machine without CUDA the GPU parts are recorded as
"skipped: no CUDA" and small CPU versions run instead, so the script is rehearsed where it is
written.

    scripts/gpu_check.sh "$OUT"                      # installs .whl/ beside torch, then runs this
    python3 scripts/gpu_check.py --out "$OUT"        # results: $OUT/<stage>.json, $OUT/summary.txt

Stages (file names are stable): foad-analysis, amp-finetune, latency, torch-compile, pytest-gpu,
latency-profile. Each has a time cap, and all share one budget (--budget-s): a stage that would
start with too little of it left is recorded as skipped. Seven files in all: a lent GPU machine
returns at most eight.
"""

from __future__ import annotations

import argparse
import copy
import math
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import foadx
from foadx.atomic import write_json
from foadx.bench import bench_model, run_bench
from foadx.data import calibration_images
from foadx.data.labeled import open_labeled
from foadx.runtime import SessionOptions, TimingSettings
from foadx.train import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[1]
PAPER_BUDGET = {"flops_target": 0.636, "round_to": 8}  # as `make demo` prunes (there at round_to 16)
NO_CUDA = "skipped: no CUDA"
MIN_STAGE_S = 20.0  # a stage is not started with less of the budget left


class StageTimeout(Exception):
    """A stage ran past its cap."""


@dataclass
class Check:
    """What the stages share: where results go, whether CUDA is here, the deadline, the models."""

    out: Path
    gpu: bool
    deadline: float  # time.perf_counter() value
    images: int
    profile_round_to: int
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)  # the summary table

    @property
    def device(self) -> str:
        return "cuda" if self.gpu else "cpu"


@contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raises StageTimeout in the main thread once ``seconds`` have passed (checked whenever
    Python regains control, so a running CUDA kernel or compile finishes first)."""
    def expire(signum: int, frame: Any) -> None:
        raise StageTimeout(f"stage cap of {seconds:.0f} s reached")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_stage(check: Check, name: str, cap_s: float, function: Callable[[Check], dict[str, Any]]) -> None:
    """Runs one stage under its cap and the shared budget; writes ``out/<name>.json`` at once."""
    left = check.deadline - time.perf_counter()
    started = time.perf_counter()
    if left < MIN_STAGE_S:
        result, status = {"skipped": f"skipped: {left:.0f} s of the budget left"}, "skipped"
    else:
        try:
            with time_cap(min(cap_s, left)):
                result = function(check)
            status = "skipped" if "skipped" in result else "ok"
        except StageTimeout as error:
            result, status = {"error": str(error)}, "TIMEOUT"
        except Exception as error:  # a failed stage must not lose the others
            result, status = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}, "FAILED"
    seconds = time.perf_counter() - started
    write_json(check.out / f"{name}.json", {"stage": name, "status": status, "seconds": seconds,
                                            "cap_s": cap_s, "result": result})
    check.rows.append(f"| {name} | {status} | {seconds:.1f} | {headline(name, result)} |")
    print(check.rows[-1], flush=True)


def headline(name: str, result: dict[str, Any]) -> str:
    """The one figure of a stage the summary table shows."""
    if "error" in result or "skipped" in result:
        return str(result.get("error") or result["skipped"]).splitlines()[0][:120]
    return HEADLINES[name](result)


def face_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return foadx.build_model("mobilefacenet").eval()


def _prune_on(model: torch.nn.Module, images: Any, device: str) -> tuple[Any, float]:
    started = time.perf_counter()
    result = foadx.prune(model, images, device=device, batch_size=64, **PAPER_BUDGET)
    if device == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def _kept(result: Any) -> dict[str, list[int]]:
    return {group["name"]: group["kept"] for group in result.plan.to_json()["groups"]}


def foad_analysis(check: Check) -> dict[str, Any]:
    """FOAD at the paper's budget on ``check.images`` digits, timed on CUDA, repeated on the CPU:
    the kept sets must be identical (both accumulate S in float64)."""
    from foadx.pruning.batchnorm import recalibrate_batchnorm

    images = calibration_images("demo", check.images, (112, 112), (0.5,) * 3, (0.5,) * 3, 64, 0)
    full = face_model()
    recalibrate_batchnorm(full, [next(iter(images))], torch.device("cpu"))  # realistic activations
    check.models["full"] = full.eval()
    record: dict[str, Any] = {"images": images.count, "similarity_dtype": "float64", "dtype_setting": (
        "none: foadx.foad.similarity always accumulates a float64 Gram matrix on the analysis device; "
        "there is no lower precision to ask for")}
    if check.gpu:
        full.to("cuda")(next(iter(images)).cuda())  # CUDA context, cuDNN handles: not FOAD's time
        full.to("cpu")
        on_gpu, record["seconds_cuda"] = _prune_on(full, images, "cuda")
    else:
        record["seconds_cuda"] = NO_CUDA
    on_cpu, record["seconds_cpu"] = _prune_on(full, images, "cpu")
    pruned = on_gpu if check.gpu else on_cpu
    check.models["foad"] = pruned.model.to("cpu").eval()
    if check.gpu:
        differing = [name for name, kept in _kept(on_cpu).items() if _kept(on_gpu).get(name) != kept]
        record.update(kept_sets_identical=not differing, differing_groups=differing)
    else:
        record["kept_sets_identical"] = NO_CUDA
    record.update(macs_full=pruned.report["macs"]["before"], macs_pruned=pruned.report["macs"]["after"],
                  t=pruned.report["t"], s=pruned.report["s"], groups=len(_kept(pruned)))
    return record


def _finetune_one(model: torch.nn.Module, check: Check, steps: int, batch: int) -> dict[str, Any]:
    data = open_labeled("demo", "train", task="face")
    per_epoch = len(data) // batch
    config = FinetuneConfig(task="face", amp=True, channels_last=check.gpu, batch_size=batch, lr=0.01,
                            epochs=max(1, math.ceil(steps / per_epoch)), steps_per_epoch=min(steps, per_epoch))
    with tempfile.TemporaryDirectory(prefix="foadx-gpu-check-") as scratch:
        history = finetune(copy.deepcopy(model), data, scratch, config, device=torch.device(check.device))
    steady = history[1:] or history  # the first epoch pays for cuDNN's algorithm choice
    return {"steps": config.epochs * config.steps_per_epoch, "batch": batch, "epochs": config.epochs,
            "images_per_s": sum(r["images"] for r in steady) / sum(r["seconds"] for r in steady),
            "first_epoch_images_per_s": history[0]["images_per_s"], "final_loss": history[-1]["loss"]}


def amp_finetune(check: Check) -> dict[str, Any]:
    """A short AMP fine-tune (foadx.train, margin head over digits 0-6 at 112x112) of the full
    and the FOAD-pruned network: images/s. On the CPU a few bf16 steps only."""
    steps, batch = (200, 64) if check.gpu else (4, 16)
    record = {label: _finetune_one(check.models[label], check, steps, batch) for label in ("full", "foad")}
    record["speedup"] = record["foad"]["images_per_s"] / record["full"]["images_per_s"]
    return {**record, "amp": "fp16 autocast" if check.gpu else "bf16 autocast (CPU)"}


def _bench_rows(report: dict[str, Any], mac_ideal: float) -> list[dict[str, Any]]:
    """One row per measured configuration; the pruned rows carry the speedup over the full
    network's row (same backend, precision, batch), the MAC-ideal speedup and their ratio."""
    rows = []
    for row in report["results"]:
        pruned = row["model"] != "full" and row["speedup_vs_first"] is not None
        rows.append({"model": row["model"], "backend": row["backend"], "precision": row["precision"],
                     "batch": row["batch"], "median_ms": row["median_of_rounds_ms"],
                     "images_per_s": row["throughput_ips"], "speedup": row["speedup_vs_first"] if pruned else None,
                     "mac_ideal": mac_ideal if pruned else None,
                     "efficiency": row["speedup_vs_first"] / mac_ideal if pruned else None,
                     "compile_s": row["backend_settings"].get("compile_s")})
    return rows


def _bench(check: Check, backends: list[str], batches: list[int], precision: str, channels_last: bool,
           duration_s: float) -> dict[str, Any]:
    """Full and FOAD-pruned, interleaved (run_bench), BatchNorm folded as a deployment would."""
    entries = [bench_model(label, check.models[label]) for label in ("full", "foad")]
    mac_ideal = entries[0].sizes["macs"] / entries[1].sizes["macs"]
    settings = TimingSettings(warmup_ms=200, duration_s=duration_s, min_iterations=20, rounds=4)
    options = SessionOptions(precision=precision, channels_last=channels_last, fold_bn=True)
    report = run_bench(entries, backends, batches, options=options, settings=settings)
    return {"mac_ideal_speedup": mac_ideal, "rows": _bench_rows(report, mac_ideal),
            "environment": report["environment"]}


def latency(check: Check) -> dict[str, Any]:
    """Full vs FOAD-pruned on torch-cuda and torch-cuda-graph, fp32 NCHW and fp16 NHWC, batch
    1/8/64/256, ~1 s per configuration; on the CPU, torch-cpu fp32 at batch 1 and 8."""
    if not check.gpu:
        return {"cuda": NO_CUDA, "cpu": _bench(check, ["torch-cpu"], [1, 8], "fp32", False, 0.5)}
    backends, batches = ["torch-cuda", "torch-cuda-graph"], [1, 8, 64, 256]
    return {"fp32": _bench(check, backends, batches, "fp32", False, 1.0),
            "fp16-channels-last": _bench(check, backends, batches, "fp16", True, 1.0)}


def torch_compile(check: Check) -> dict[str, Any]:
    """The torch-compile backend (inductor; CUDA graphs on CUDA): fp16 NHWC at batch 1 and 256
    on the GPU, fp32 at batch 1 on the CPU; compile seconds per model and batch apart."""
    if not check.gpu:
        return {"cuda": NO_CUDA, "cpu": _bench(check, ["torch-compile"], [1], "fp32", False, 0.5)}
    return {"fp16-channels-last": _bench(check, ["torch-compile"], [1, 256], "fp16", True, 1.0)}


def pytest_gpu(check: Check) -> dict[str, Any]:
    """``pytest -m gpu`` over tests/ (they skip without CUDA); the output's tail is kept."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    left = check.deadline - time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(left, 1.0))
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return {"command": " ".join(command[1:]), "returncode": completed.returncode, "last_line": lines[-1] if lines else "",
            "tail": lines[-40:]}


def latency_profile(check: Check) -> dict[str, Any]:
    """A latency table of the full network on torch-cuda (``foadx profile``) and one
    ``prune --latency-target 1.5x`` on it, measured."""
    if not check.gpu:
        return {"skipped": NO_CUDA}
    from foadx.latency import profile, prune_to_latency

    started = time.perf_counter()
    table = profile(check.models["full"], "torch-cuda", round_to=check.profile_round_to)
    profile_s = time.perf_counter() - started
    images = calibration_images("demo", check.images, (112, 112), (0.5,) * 3, (0.5,) * 3, 64, 0)
    result = prune_to_latency(check.models["full"], images, "1.5x", backend="torch-cuda", table=table, device="cuda")
    return {"profile_s": profile_s, "round_to": table.round_to, "entries": len(table.entries),
            "network_ms": table.network_ms, "checks": table.checks, "prune": result.report["latency"]}


def _best(rows: list[dict[str, Any]], model: str, batch: int) -> str:
    chosen = [row for row in rows if row["model"] == model and row["batch"] == batch]
    best = min(chosen, key=lambda row: row["median_ms"], default=None)
    return f"{best['median_ms']:.3f} ms ({best['backend']} {best['precision']})" if best else "-"


def _bench_headline(result: dict[str, Any]) -> str:
    rows = [row for part in result.values() if isinstance(part, dict) for row in part.get("rows", [])]
    b256 = [row for row in rows if row["model"] == "foad" and row["batch"] == 256 and row["precision"] == "fp16"]
    best256 = max(b256, key=lambda row: row["speedup"], default=None)
    text = f"foad b1 best {_best(rows, 'foad', 1)}"
    if best256:
        text += f"; b256 fp16 {best256['speedup']:.2f}x ({best256['efficiency']:.0%} of MAC-ideal)"
    return text


def _foad_headline(result: dict[str, Any]) -> str:
    cuda = result["seconds_cuda"]
    cuda = cuda if isinstance(cuda, str) else f"{cuda:.2f} s"
    return f"cuda {cuda}, cpu {result['seconds_cpu']:.1f} s, kept sets identical: {result['kept_sets_identical']}"


HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "foad-analysis": _foad_headline,
    "amp-finetune": lambda r: f"{r['full']['images_per_s']:.0f} / {r['foad']['images_per_s']:.0f} img/s (full / foad)",
    "latency": _bench_headline,
    "torch-compile": _bench_headline,
    "pytest-gpu": lambda r: r["last_line"],
    "latency-profile": lambda r: (f"{r['entries']} entries in {r['profile_s']:.0f} s; 1.5x: "
                                  f"{r['prune']['measured_ms']:.3f} ms vs {r['prune']['unpruned_ms']:.3f} ms"),
}

STAGES: list[tuple[str, float, Callable[[Check], dict[str, Any]]]] = [
    ("foad-analysis", 150, foad_analysis),
    ("amp-finetune", 90, amp_finetune),
    ("latency", 120, latency),
    ("torch-compile", 150, torch_compile),
    ("pytest-gpu", 150, pytest_gpu),
    ("latency-profile", 150, latency_profile),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=440.0, help="all stages together, seconds")
    parser.add_argument("--images", type=int, default=None, help="calibration images (512 on CUDA, 32 on a CPU)")
    parser.add_argument("--profile-round-to", type=int, default=16,
                        help="width step of the latency table (8, torch-cuda's own, measures 631 units: ~2 min)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available()
    check = Check(args.out, gpu, time.perf_counter() + args.budget_s, args.images or (512 if gpu else 32),
                  args.profile_round_to)
    device = torch.cuda.get_device_name() if gpu else "CPU only"
    header = [f"device: {device}; torch {torch.__version__}; foadx {foadx.__version__} from {Path(foadx.__file__).parent}", "",
              "| stage | status | seconds | headline |", "|---|---|---|---|"]
    print("\n".join(header), flush=True)
    for name, cap_s, function in STAGES:
        run_stage(check, name, cap_s, function)
    (args.out / "summary.txt").write_text("\n".join(header + check.rows) + "\n")


if __name__ == "__main__":
    main()
