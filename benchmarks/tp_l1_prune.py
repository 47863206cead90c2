"""A plain Torch-Pruning script doing the job of ``foadx prune MODEL --criterion l1 --ratio R``:
build the model, remove floor(R * C) channels of each named group by the L1 norm of its
producing convolution's filters (Li et al. 2017), save the state dict. The baseline of
``bench_prune_overhead.py``; the group names come from ``foadx inspect --json`` beforehand.

    python benchmarks/tp_l1_prune.py GROUPS.json OUT.pt [--model mobilefacenet] [--ratio 0.5]
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch_pruning as tp

from foadx.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("groups", help="JSON list of producing conv names, one per group")
    parser.add_argument("out")
    parser.add_argument("--model", default="mobilefacenet")
    parser.add_argument("--ratio", type=float, default=0.5)
    arguments = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(arguments.model).eval()
    size = model.foadx_provenance.source.input_size
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(2, 3, *size))
    modules = dict(model.named_modules())
    for name in json.load(open(arguments.groups)):
        conv = modules[name]
        norms = conv.weight.detach().abs().flatten(1).sum(1)
        removed = norms.argsort()[: math.floor(arguments.ratio * conv.out_channels)].tolist()
        graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=removed).prune()
    torch.save(model.state_dict(), arguments.out)


if __name__ == "__main__":
    main()
