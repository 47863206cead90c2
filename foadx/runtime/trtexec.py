"""trtexec: the command line foadx would run, and its performance summary parsed into foadx's
latency schema — for targets where only trtexec exists (Jetson/JetPack, NVIDIA's containers) and
for logs produced on another machine (``foadx bench --trtexec-log``).

trtexec reports per inference: Latency (host: H2D + GPU compute + D2H), Enqueue Time, H2D
Latency, GPU Compute Time, D2H Latency, each as min/max/mean/median and percentiles; TensorRT
8.x prints only the 99th percentile, 10.x the 90th, 95th and 99th. Throughput is in inferences
per second (qps); one inference processes a whole batch, except in TensorRT 8's implicit-batch
mode (``--batch=N``), where qps already counts images (the Jetson sample: ~2,570 inferences/s of
16 images are printed as 41,088 qps).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from foadx.errors import BadInputError, FoadxError
from foadx.optional import trtexec_executable
from foadx.runtime.engine_options import EngineOptions

_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([0-9.eE+-]+)\s*ms")
_LINE = re.compile(r"\[I\]\s+(Latency|End-to-End Host Latency|Enqueue Time|H2D Latency|GPU Compute Time|D2H Latency):\s*(.*)$")
_THROUGHPUT = re.compile(r"\[I\]\s+Throughput:\s*([0-9.eE+-]+)\s*qps")
_VERSION = re.compile(r"\[TensorRT v(\d+)\]")
_WALLTIME = re.compile(r"\[I\]\s+Total Host Walltime:\s*([0-9.eE+-]+)\s*s")
_GPU_TOTAL = re.compile(r"\[I\]\s+Total GPU Compute Time:\s*([0-9.eE+-]+)\s*s")
_BATCH = re.compile(r"--(?:shapes|optShapes)=[^\s:]+:(\d+)x|--batch=(\d+)")  # explicit | implicit batch
KEYS = {"Latency": "latency", "End-to-End Host Latency": "end_to_end", "Enqueue Time": "enqueue",
        "H2D Latency": "h2d", "GPU Compute Time": "gpu_compute", "D2H Latency": "d2h"}


@dataclass
class TrtexecSummary:
    """What a trtexec log says: throughput (inferences/s), per-stage latency statistics (ms),
    TensorRT version, batch, and total host wall time and GPU compute (s)."""

    throughput_qps: float
    stages: dict[str, dict[str, float]]  # stage -> {mean, min, max, p50, p90?, p95?, p99?} in ms
    tensorrt_version: str | None = None
    batch: int | None = None
    implicit_batch: bool = False  # --batch=N (TensorRT <= 8): qps already counts images
    host_walltime_s: float | None = None
    gpu_compute_total_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def iterations(self) -> int | None:
        """Timed inferences: total GPU compute over its mean (trtexec prints no count)."""
        compute = self.stages.get("gpu_compute")
        if self.gpu_compute_total_s is None or not compute:
            return None
        return max(1, round(self.gpu_compute_total_s * 1000.0 / compute["mean"]))


def _version(code: str) -> str:
    """trtexec's integer version: 8400 -> 8.4.0, 100200 -> 10.2.0."""
    number = int(code)
    major, rest = divmod(number, 10000 if number >= 100000 else 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def _stats(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, percentile, number in _STAT.findall(text):
        if name.startswith("percentile"):
            key = f"p{float(percentile):g}"
        else:
            key = {"median": "p50"}.get(name, name)
        values[key] = float(number)
    return values


def parse_trtexec_log(text: str, source: str = "trtexec log") -> TrtexecSummary:
    """The ``=== Performance summary ===`` of a trtexec run (TensorRT 7.x to 10.x)."""
    if "Performance summary" not in text:
        raise BadInputError(f"{source} holds no trtexec performance summary ('=== Performance summary ===')")
    throughput = _THROUGHPUT.search(text)
    if throughput is None:
        raise BadInputError(f"{source}: the performance summary has no 'Throughput: ... qps' line")
    stages: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _LINE.search(line)
        if match:
            stats = _stats(match.group(2))
            if not {"min", "max", "mean", "p50"} <= stats.keys():
                raise BadInputError(f"{source}: cannot read the statistics of {match.group(1)!r}: {match.group(2)!r}")
            stages[KEYS[match.group(1)]] = stats
    if "latency" not in stages:
        raise BadInputError(f"{source}: the performance summary has no 'Latency:' line")
    version = _VERSION.search(text)
    batch = _BATCH.search(text)
    walltime, gpu_total = _WALLTIME.search(text), _GPU_TOTAL.search(text)
    return TrtexecSummary(
        throughput_qps=float(throughput.group(1)),
        stages=stages,
        tensorrt_version=_version(version.group(1)) if version else None,
        batch=int(batch.group(1) or batch.group(2)) if batch else None,
        implicit_batch=bool(batch and batch.group(2)),
        host_walltime_s=float(walltime.group(1)) if walltime else None,
        gpu_compute_total_s=float(gpu_total.group(1)) if gpu_total else None,
    )


def read_trtexec_log(path: str | Path) -> TrtexecSummary:
    """``parse_trtexec_log`` of the file at ``path``.

    Raises:
        BadInputError: the file cannot be read, or holds no trtexec performance summary.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise BadInputError(f"cannot read trtexec log {path}: {error}") from error
    return parse_trtexec_log(text, str(path))


@dataclass(frozen=True)
class TrtexecOptions:
    """What foadx asks trtexec for (see ``trtexec --help`` of TensorRT 8.6/10): the engine as the
    Python builder would build it, plus trtexec's own timing settings."""

    engine: EngineOptions = EngineOptions()
    warmup_ms: float = 200.0
    duration_s: float = 3.0
    min_iterations: int = 10
    use_cuda_graph: bool = True
    save_engine: str | None = None


def _shape(name: str, batch: int, chw: tuple[int, int, int]) -> str:
    return f"{name}:{batch}x{'x'.join(map(str, chw))}"


def trtexec_command(model: str | Path, input_name: str, chw: tuple[int, int, int], options: TrtexecOptions,
                    executable: str = "trtexec") -> list[str]:
    """The trtexec argument list: build from an ONNX file (with an optimization profile for the
    dynamic batch) or load a serialized engine, then time at the opt batch size."""
    model, engine, profile = str(model), options.engine, options.engine.profile
    command = [executable]
    if model.endswith(".onnx"):
        command += [f"--onnx={model}",
                    f"--minShapes={_shape(input_name, profile.min_batch, chw)}",
                    f"--optShapes={_shape(input_name, profile.opt_batch, chw)}",
                    f"--maxShapes={_shape(input_name, profile.max_batch, chw)}"]
        if engine.precision == "fp16":
            command.append("--fp16")
        elif engine.precision == "int8":
            command += ["--int8", "--fp16"]  # Q/DQ layers run int8, the rest may use fp16
        if engine.workspace_gb is not None:
            command.append(f"--memPoolSize=workspace:{int(engine.workspace_gb * 1024)}M")
        if engine.timing_cache:
            command.append(f"--timingCacheFile={engine.timing_cache}")
        if options.save_engine:
            command.append(f"--saveEngine={options.save_engine}")
    else:
        command += [f"--loadEngine={model}", f"--shapes={_shape(input_name, profile.opt_batch, chw)}"]
    command += [f"--warmUp={int(options.warmup_ms)}", f"--duration={options.duration_s:g}",
                f"--iterations={options.min_iterations}"]
    if options.use_cuda_graph:
        command.append("--useCudaGraph")
    return command


def run_trtexec(model: Path, input_name: str, chw: tuple[int, int, int], options: TrtexecOptions,
                timeout_s: float = 3600) -> TrtexecSummary:
    """Runs trtexec on an ONNX file or engine here and parses its summary."""
    command = trtexec_command(model, input_name, chw, options, trtexec_executable())
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise FoadxError(f"trtexec did not finish within {timeout_s:g} s: {' '.join(command)}") from error
    if completed.returncode != 0:
        tail = " | ".join((completed.stdout + completed.stderr).strip().splitlines()[-3:])
        raise FoadxError(f"trtexec failed (exit {completed.returncode}): {tail}")
    return parse_trtexec_log(completed.stdout, "trtexec output")
