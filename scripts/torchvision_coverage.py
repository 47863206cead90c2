"""Which torchvision classification models foadx prunes: every model of
``torchvision.models.list_models(module=torchvision.models)``, randomly initialised, pruned with
FOAD at ``--ratio 0.3`` on 2 embedded digits at a reduced input size where the model allows
(each in its own process, with a time limit), checked to keep its output shape, lose
parameters and give finite outputs. Prints the coverage table of docs/bring-your-own-model.md.

    .venv/bin/python scripts/torchvision_coverage.py [--size 64] [--timeout 300] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

FIXED_SIZE = {"vit": 224, "swin": 224, "maxvit": 224, "inception_v3": 299, "googlenet": 64}


def input_size(name: str, size: int) -> int:
    return next((fixed for prefix, fixed in FIXED_SIZE.items() if name.startswith(prefix)), size)


def one(name: str, size: int) -> dict:
    """Prunes one model in this process and describes what happened."""
    import torch

    import foadx
    from foadx.data import calibration_images
    from foadx.errors import FoadxError
    from foadx.pruning.api import inspect_model

    torch.manual_seed(0)
    model = foadx.build_model(f"torchvision:{name}", (size, size)).eval()
    images = next(iter(calibration_images("demo", 2, (size, size), (0.5,) * 3, (0.5,) * 3, batch_size=2)))
    info = inspect_model(model, images)
    groups = info["groups"]
    row = {"model": name, "size": size, "groups": len(groups),
           "decoupled": sum(g["default"] for g in groups),
           "coupled": sum(g["coupled"] and not g["note"] for g in groups),
           "barrier": sum(bool(g["note"]) for g in groups)}
    with torch.no_grad():
        expected = model(images)
    try:
        result = foadx.prune(model, images, ratio=0.3, batch_size=2)
    except FoadxError as error:
        return {**row, "status": f"refused (exit {error.exit_code}): {error}"}
    with torch.no_grad():
        output = result.model(images)
    same_shape = tuple(output.shape) == tuple(expected.shape)
    finite = bool(torch.isfinite(output).all())
    removed = result.report["params"]["reduction"]
    ok = same_shape and finite and removed > 0
    return {**row, "params_removed": removed, "status": "pruned" if ok else
            f"BROKEN (shape {same_shape}, finite {finite}, removed {removed:.3f})"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(one(arguments.one, input_size(arguments.one, arguments.size))))
        return
    import torchvision

    names = arguments.only or torchvision.models.list_models(module=torchvision.models)
    print("| model | input | groups | decoupled | coupled | barrier/unsupported | params removed | result |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        try:
            done = subprocess.run([sys.executable, __file__, "--one", name, "--size", str(arguments.size)],
                                  capture_output=True, text=True, timeout=arguments.timeout)
            lines = done.stdout.strip().splitlines()
            row = json.loads(lines[-1]) if done.returncode == 0 and lines else {
                "model": name, "status": "CRASH: " + (done.stderr.strip().splitlines() or ["?"])[-1][:120]}
        except subprocess.TimeoutExpired:
            row = {"model": name, "status": f"timed out after {arguments.timeout} s"}
        removed = f"{row['params_removed']:.1%}" if "params_removed" in row else "-"
        print(f"| {row['model']} | {row.get('size', '-')} | {row.get('groups', '-')} | {row.get('decoupled', '-')} | "
              f"{row.get('coupled', '-')} | {row.get('barrier', '-')} | {removed} | {row['status']} |", flush=True)


if __name__ == "__main__":
    main()
