"""One call on a GPU machine (docs/gpu.md): FOAD on cuda, export, and latency of full vs
FOAD-pruned MobileFaceNet on torch-cuda (eager and CUDA graph; fp32 and fp16; batch 1 and 256),
TensorRT where importable. On a CPU-only machine the GPU parts are skipped and ORT CPU runs
instead, so the script is tested where it is written.

    python scripts/gpu_check.py --out "$OUT"          # results: $OUT/*.json, summary printed last

Every stage writes its JSON as soon as it finishes: a killed run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import torch

import foadx
from foadx.atomic import write_json
from foadx.bench import bench_model, run_bench
from foadx.data import calibration_images
from foadx.runtime import SessionOptions, TimingSettings


def stage(out: Path, name: str, summary: list[str], function) -> object:
    started = time.perf_counter()
    try:
        result = function()
        status = "ok"
    except Exception as error:  # a failed stage must not lose the others
        result, status = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}, "FAILED"
    seconds = time.perf_counter() - started
    write_json(out / f"{name}.json", {"stage": name, "status": status, "seconds": seconds, "result": result})
    summary.append(f"{name:<28} {status:<7} {seconds:7.1f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--duration-s", type=float, default=2.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available()
    summary = [f"device: {torch.cuda.get_device_name() if gpu else 'CPU only'}; torch {torch.__version__}"]
    images = calibration_images("demo", 128, (112, 112), (0.5,) * 3, (0.5,) * 3, 64, 0)
    torch.manual_seed(0)
    full = foadx.build_model("mobilefacenet")
    models = {"full": full}

    def prune(round_to: int):
        def run():
            started = time.perf_counter()
            result = foadx.prune(full, images, flops_target=0.636, round_to=round_to, recalibrate_bn=True,
                                 device="cuda" if gpu else "cpu")
            models[f"foad-r{round_to}"] = result.model.to("cpu").eval()
            return {"seconds": time.perf_counter() - started, "macs": result.report["macs"], "t": result.report["t"]}
        return run

    for round_to in (1, 8):
        stage(args.out, f"prune-foad-r{round_to}", summary, prune(round_to))
    stage(args.out, "export-verify", summary,
          lambda: foadx.export_onnx(models["foad-r8"], args.out / "mobilefacenet-foad-r8.onnx").parity.worst())
    entries = [bench_model(name, model) for name, model in models.items()]
    settings = TimingSettings(warmup_ms=500, duration_s=args.duration_s, min_iterations=50, rounds=4)
    configurations = ([("torch-cuda", "fp32", False), ("torch-cuda-graph", "fp32", False),
                       ("torch-cuda", "fp16", True), ("torch-cuda-graph", "fp16", True)] if gpu
                      else [("ort-cpu", "fp32", False)])
    for backend, precision, channels_last in configurations:
        options = SessionOptions(precision=precision, channels_last=channels_last, fold_bn=backend != "ort-cpu")
        name = f"bench-{backend}-{precision}"
        batches = [1, 256] if gpu else [1, 8]
        report = stage(args.out, name, summary,
                       lambda: run_bench(entries, [backend], batches, options=options, settings=settings))
        if isinstance(report, dict) and "results" in report:
            for row in report["results"]:
                summary.append(f"  {row['model']:<10} {backend:<17} {precision} b{row['batch']:<4} "
                               f"{row['median_of_rounds_ms']:8.3f} ms {row['throughput_ips']:10.0f} img/s "
                               f"{row['speedup_vs_first']:.2f}x")
    import importlib.util

    have_trt = gpu and importlib.util.find_spec("tensorrt") is not None
    if have_trt:
        report = stage(args.out, "bench-trt-fp16", summary, lambda: run_bench(
            entries, ["trt"], [1, 256], settings=settings, options=SessionOptions()))
    else:
        summary.append("TensorRT: not importable here (skipped)")
    (args.out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
