"""Peak memory of large_44k inference on the CPU in bfloat16, loading an fp32 .pth checkpoint.

    PYTHONPATH=python python bench/mem_mmaudio.py make /tmp/large_44k.pth   # 4.1 GB random checkpoint
    PYTHONPATH=python python bench/mem_mmaudio.py run /tmp/large_44k.pth    # load (mmap) + one CFG evaluation

Prints the peak resident set size (ru_maxrss) after loading and after a network evaluation.
"""
import resource
import sys
import time

import torch


def rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make(path):
    from sonicore.models import mmaudio
    cfg = mmaudio.variant_config("large_44k")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in mmaudio.MMAudioNetwork(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.rand(s, generator=g) - 0.5) * 0.05 for k, s in shapes.items()}
    sd["latent_std"] = torch.ones(shapes["latent_std"])
    torch.save(sd, path)
    print(f"wrote {path}: {sum(v.numel() for v in sd.values()) / 1e9:.2f} G parameters")


def run(path):
    from sonicore.models import mmaudio
    t0 = time.time()
    net = mmaudio.load(path, dtype=torch.bfloat16)
    print(f"loaded {net.variant} in {time.time() - t0:.1f} s; peak RSS {rss_gb():.2f} GB")
    L = net.cfg.seq_lengths(8.0)
    B = 1
    clip = torch.randn(B, L["clip"], net.cfg.clip_dim)
    sync = torch.randn(B, L["sync"], net.cfg.sync_dim)
    text = torch.randn(B, net.cfg.text_seq_len, net.cfg.text_dim)
    t0 = time.time()
    z = mmaudio.generate(net, clip_f=clip, sync_f=sync, text_f=text, steps=1)
    print(f"one CFG step (batch 2 evaluation) in {time.time() - t0:.1f} s, finite={bool(torch.isfinite(z).all())}; "
          f"peak RSS {rss_gb():.2f} GB")


if __name__ == "__main__":
    {"make": make, "run": run}[sys.argv[1]](sys.argv[2])
