"""Repeat the MMAudio parity check: load a golden file's weights through the public loader, run
the network on its inputs and compare with the outputs the original implementation produced.

    python examples/mmaudio_parity.py ../shared/goldens/mmaudio_tiny_v1.safetensors
"""
import sys

import torch
from safetensors.torch import load_file

from sonicore.models import mmaudio


def main(path: str) -> int:
    g = load_file(path)
    net = mmaudio.load(path)  # the loader takes the weights.* tensors of a golden file
    args = [g["inputs.x_t"], g["inputs.clip_f"], g["inputs.sync_f"], g["inputs.text_f"]]
    if net.cfg.separation:
        args.append(g["inputs.x_cond"])
    with torch.no_grad():
        flow = net(*args, g["inputs.t"])
    err = (flow - g["outputs.flow"]).abs().max().item()
    scale = g["outputs.flow"].abs().max().item()
    print(f"{path}: flow {tuple(flow.shape)}, max abs error {err:.3g} (output scale {scale:.3g})")
    return 0 if err <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
