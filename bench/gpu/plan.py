"""Plan, dry-run and report for the GPU proof script (bench/gpu/run.sh)."""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STEPS = [
    "build sonicore with CUDA for sm_90 (pip --no-build-isolation), save the ptxas resource report",
    "pytest -m 'gpu or triton' tests/: every CUDA and Triton kernel vs its torch reference on the GPU",
    "pytest -m gpu bench/: GPU benchmarks next to their peers (torch.stft, SDPA flash/cuDNN, copy bandwidth, "
    "CUDA graphs vs eager, MMAudio large_44k loop)",
    "write RESULTS_gpu.md (markdown table) and bench.json (raw) into OUT",
]


def collect(paths, marker):
    cmd = [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "-m", marker, *paths]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    ids = [ln for ln in res.stdout.splitlines() if "::" in ln]
    return res.returncode, ids, res.stdout[-2000:] + res.stderr[-2000:]


def dry_run(out: str) -> int:
    problems = []
    for mod in ("torch", "numpy", "pytest", "pytest_benchmark", "sonicore", "sonicore.ops"):
        try:
            importlib.import_module(mod)
        except Exception as exc:  # noqa: BLE001 - report every failure
            problems.append(f"cannot import {mod}: {exc}")
    print("GPU proof plan:")
    for i, s in enumerate(STEPS, 1):
        print(f"  {i}. {s}")
    rc, tests, log = collect(["tests"], "gpu or triton")
    if rc not in (0, 5):
        problems.append(f"collecting GPU tests failed:\n{log}")
    rc2, benches, log2 = collect(["bench"], "gpu")
    if rc2 not in (0, 5):
        problems.append(f"collecting GPU benchmarks failed:\n{log2}")
    print(f"GPU tests that would run: {len(tests)}")
    for t in tests[:200]:
        print(f"  {t}")
    print(f"GPU benchmarks that would run: {len(benches)}")
    for b in benches:
        print(f"  {b}")
    with open(os.path.join(out, "plan.txt"), "w") as f:
        f.write("\n".join(tests + benches) + "\n")
    for p in problems:
        print("PROBLEM:", p)
    if not tests:
        problems.append("no GPU tests collected")
        print("PROBLEM: no GPU tests collected")
    return 1 if problems else 0


def report(bench_json: str, out: str) -> int:
    try:
        with open(bench_json) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"no benchmark results in {bench_json}: {exc}")
        return 1
    machine = data.get("machine_info", {})
    lines = [f"# GPU proof run, {datetime.date.today().isoformat()}", "",
             f"machine: {machine.get('node', '?')}, {machine.get('cpu', {}).get('brand_raw', '')}", "",
             "| benchmark | median | extra |", "| --- | --- | --- |"]
    for b in data.get("benchmarks", []):
        med = b["stats"]["median"]
        extra = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(b.get("extra_info", {}).items()))
        lines.append(f"| {b['fullname'].split('::')[-1]} | {med * 1e3:.3f} ms | {extra} |")
    with open(os.path.join(out, "RESULTS_gpu.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--report")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.dry_run:
        return dry_run(a.out)
    return report(a.report, a.out)


if __name__ == "__main__":
    sys.exit(main())
