"""Alignment benchmarks: speed against the ctranslate2 Whisper.align pipeline and stable-ts,
accuracy on the generated set against openai-whisper's timing code, ctranslate2 and stable-ts,
peak memory on 10 minutes.

stable-ts is optional: install it without its dependencies where this process can import it,
e.g. ``pip install --no-deps --target /tmp/st_pkgs stable-ts`` and
``export SONICORE_STABLE_TS_PATH=/tmp/st_pkgs`` (torchaudio is stubbed in this process only;
see bench/align_peers.py).

pytest-benchmark (speed, same run, 2 threads):
    PYTHONPATH=python:tests:bench python -m pytest -q bench/bench_align.py --benchmark-only
Script (speed ratio, accuracy table, memory):
    PYTHONPATH=python:tests:bench python bench/bench_align.py [--speed] [--stable-ts] [--accuracy N] [--memory]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import soundfile as sf
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import alignment_data as ad  # noqa: E402

THREADS = 2
SR = 16000


def _threads():
    import sonicore
    torch.set_num_threads(THREADS)
    sonicore.set_num_threads(THREADS)


def long_clip_file(seconds: float, seed: int, folder: str):
    rng = np.random.default_rng(seed)
    clip = ad.make_long_clip(rng, seconds)
    path = os.path.join(folder, f"clip_{int(seconds)}s.flac")
    sf.write(path, clip.audio, clip.sr)
    return path, clip


def ct2_pipeline(peer, path: str, clip) -> list:
    """The same job with ctranslate2: read + resample the file, whisper log-mel, one
    Whisper.align call per 30 s window with the words whose true start lies in it (an oracle
    split: the peer gets the easy version of the text distribution), words from the path."""
    import soxr
    audio, sr = sf.read(path, dtype="float32")
    audio = soxr.resample(audio, sr, SR).astype(np.float32)
    starts = []
    win = 30.0
    words = [w for w, _ in clip.words]
    true = [s if s is not None else (clip.words[i - 1][1] or 0.0) for i, (_, s) in enumerate(clip.words)]
    t = 0.0
    while t < len(audio) / SR:
        idx = [i for i, s in enumerate(true) if t <= s < t + win]
        if idx:
            seg = audio[int(t * SR):int((t + win) * SR)]
            starts += [t + s for s in peer.align(seg, [words[i] for i in idx])]
        t += win
    return starts


def stable_ts_pipeline(peer, path: str, clip) -> list:
    """The same job with stable-ts: read + resample the file as the ctranslate2 pipeline does,
    then one ``model.align(audio, text)`` call on the whole text (stable-ts plans its own
    windows); word starts in text order."""
    import soxr
    audio, sr = sf.read(path, dtype="float32")
    audio = soxr.resample(audio, sr, SR).astype(np.float32)
    return peer.align(audio, [w for w, _ in clip.words])


def _stable_ts_peer():
    """StableTsPeer, or None with the reason printed when stable-ts cannot be imported."""
    from align_peers import StableTsPeer
    try:
        return StableTsPeer()
    except ImportError as exc:
        print(f"stable-ts not measured: {exc} (see the module docstring to install it)")
        return None


# ------------------------------------------------------------------ pytest-benchmark
@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align_bench")
    return long_clip_file(180.0, 1234, str(folder))


def test_align_3min_sonicore(benchmark, three_minutes):
    from sonicore import Aligner
    _threads()
    path, clip = three_minutes
    aligner = Aligner.from_pretrained("tiny.en", device="cpu")
    result = benchmark.pedantic(lambda: aligner.align(path, clip.lyrics, progress=False), rounds=2, iterations=1,
                                warmup_rounds=1)
    assert len(result.words) == len(clip.words)


def test_align_3min_ctranslate2(benchmark, three_minutes):
    pytest.importorskip("ctranslate2")
    from align_peers import CTranslate2Peer
    _threads()
    path, clip = three_minutes
    peer = CTranslate2Peer(threads=THREADS)
    starts = benchmark.pedantic(lambda: ct2_pipeline(peer, path, clip), rounds=2, iterations=1, warmup_rounds=1)
    assert len(starts) > 0


def test_align_3min_stable_ts(benchmark, three_minutes):
    from align_peers import StableTsPeer
    try:
        peer = StableTsPeer()
    except ImportError as exc:
        pytest.skip(f"stable-ts is not importable: {exc}")
    _threads()
    path, clip = three_minutes
    starts = benchmark.pedantic(lambda: stable_ts_pipeline(peer, path, clip), rounds=1, iterations=1,
                                warmup_rounds=0)
    assert len(starts) == len(clip.words)


# ------------------------------------------------------------------ script
def run_stable_ts_speed(seconds=180.0, threads=THREADS):
    """One timed stable-ts run against the best of two sonicore runs around it on the same
    3-minute file (stable-ts is many times slower), after a warm-up of both on 20 s; wall and
    process CPU time."""
    global THREADS
    THREADS = threads
    from sonicore import Aligner
    _threads()
    peer = _stable_ts_peer()
    if peer is None:
        return
    with tempfile.TemporaryDirectory() as d:
        path, clip = long_clip_file(seconds, 1234, d)
        aligner = Aligner.from_pretrained("tiny.en", device="cpu")
        a16 = np.zeros(SR * 20, np.float32)
        aligner.align(a16, "warm up", sr=SR, progress=False)
        peer.align(a16, ["warm", "up"])
        def timed(fn):
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            return out, time.perf_counter() - t, time.process_time() - c

        # sonicore before and after the stable-ts run (best kept): load changes on a shared machine.
        r, ours, cpu_ours = timed(lambda: aligner.align(path, clip.lyrics, progress=False))
        s, theirs, cpu_theirs = timed(lambda: stable_ts_pipeline(peer, path, clip))
        _, ours2, cpu_ours2 = timed(lambda: aligner.align(path, clip.lyrics, progress=False))
        ours, cpu_ours = min(ours, ours2), min(cpu_ours, cpu_ours2)
        true = [x for _, x in clip.words]
        m_ours = ad.metrics([w.start for w in r.words], true)
        m_st = ad.metrics(s, true)
    print(f"speed, {seconds:.0f} s of speech ({len(clip.words)} words), {THREADS} threads:")
    print(f"  sonicore Aligner        {ours:7.2f} s (CPU {cpu_ours:6.2f} s)  AAE {m_ours['aae']:.3f} "
          f"PCO@0.3 {m_ours['pco_0.3']:.3f}")
    print(f"  stable-ts model.align   {theirs:7.2f} s (CPU {cpu_theirs:6.2f} s)  AAE {m_st['aae']:.3f} "
          f"PCO@0.3 {m_st['pco_0.3']:.3f}")
    print(f"  ratio stable-ts / sonicore = {theirs / ours:.2f} (wall), {cpu_theirs / cpu_ours:.2f} (CPU time)")


def run_speed(seconds=180.0, rounds=2, threads=THREADS):
    """Wall time (best of `rounds`, interleaved) and process CPU time of both pipelines. CPU
    time counts the work of all threads; on a shared, loaded machine it moves far less than
    wall time, so it is printed beside it."""
    global THREADS
    THREADS = threads
    from sonicore import Aligner
    from align_peers import CTranslate2Peer
    _threads()
    with tempfile.TemporaryDirectory() as d:
        path, clip = long_clip_file(seconds, 1234, d)
        aligner = Aligner.from_pretrained("tiny.en", device="cpu")
        peer = CTranslate2Peer(threads=THREADS)
        # Warm-up on the first 20 s (thread pools, first-touch of weights, allocator).
        short = os.path.join(d, "warmup.wav")
        sf.write(short, sf.read(path, dtype="float32")[0][:20 * 22050], 22050)
        aligner.align(short, " ".join(w for w, s in clip.words if s is not None and s < 15), progress=False)
        peer.align(np.zeros(SR * 20, np.float32), ["warm", "up"])
        ours, theirs, cpu_ours, cpu_theirs = [], [], [], []
        for _ in range(rounds):  # interleaved so that machine noise hits both alike
            t, c = time.perf_counter(), time.process_time()
            r = aligner.align(path, clip.lyrics, progress=False)
            ours.append(time.perf_counter() - t); cpu_ours.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            s = ct2_pipeline(peer, path, clip)
            theirs.append(time.perf_counter() - t); cpu_theirs.append(time.process_time() - c)
        true = [x for _, x in clip.words]
        m_ours = ad.metrics([w.start for w in r.words], true)
    print(f"speed, {seconds:.0f} s of speech ({len(clip.words)} words), {THREADS} threads, best of {rounds}:")
    print(f"  sonicore Aligner        {min(ours):7.2f} s   (all: {', '.join(f'{x:.2f}' for x in ours)})  "
          f"AAE {m_ours['aae']:.3f} PCO@0.3 {m_ours['pco_0.3']:.3f}")
    print(f"  ctranslate2 pipeline    {min(theirs):7.2f} s   (all: {', '.join(f'{x:.2f}' for x in theirs)})  "
          f"(oracle text split, {len(s)} words)")
    print(f"  ratio ctranslate2 / sonicore = {min(theirs) / min(ours):.2f}  (wall)")
    print(f"  CPU time, min over rounds: sonicore {min(cpu_ours):.2f} s, ctranslate2 {min(cpu_theirs):.2f} s, "
          f"ratio {min(cpu_theirs) / min(cpu_ours):.2f}")


def run_accuracy(n_clips: int, seed: int = 2026):
    from sonicore import Aligner
    from align_peers import CTranslate2Peer, OpenAIWhisperPeer
    import soxr
    _threads()
    aligner = Aligner.from_pretrained("tiny.en", device="cpu")
    raw = Aligner(aligner.model, aligner.tokenizer, aligner.alignment_heads, onset_shift=0.0)
    peers = [OpenAIWhisperPeer()]
    try:
        peers.append(CTranslate2Peer(threads=THREADS))
    except ImportError:
        pass
    st = _stable_ts_peer()
    if st is not None:
        peers.append(st)
    rng = np.random.default_rng(seed)
    for kind in ("speech", "sung", "sung+band"):
        rows = {"sonicore": ([], []), "sonicore (onset_shift=0)": ([], [])}
        rows.update({p.name: ([], []) for p in peers})
        for _ in range(n_clips):
            clip = ad.make_clip(rng, n_lines=3, sung=kind != "speech", accompaniment=kind == "sung+band")
            true = [s for _, s in clip.words]
            for name, al in (("sonicore", aligner), ("sonicore (onset_shift=0)", raw)):
                r = al.align(clip.audio, clip.lyrics, sr=clip.sr)
                rows[name][0].extend(w.start for w in r.words)
                rows[name][1].extend(true)
            a16 = soxr.resample(clip.audio, clip.sr, SR).astype(np.float32)
            for p in peers:
                rows[p.name][0].extend(p.align(a16, [w for w, _ in clip.words]))
                rows[p.name][1].extend(true)
        print(f"\n{kind}: {n_clips} clips (seed {seed})")
        print(f"  {'aligner':28s} {'AAE s':>7s} {'median':>7s} {'PCO@0.3':>8s} {'PCO@0.1':>8s} {'words':>6s}")
        for name, (p, t) in rows.items():
            m = ad.metrics(p, t)
            print(f"  {name:28s} {m['aae']:7.3f} {m['median']:7.3f} {m['pco_0.3']:8.3f} {m['pco_0.1']:8.3f} {m['n']:6d}")


LONG_CASES = (  # (name, seconds, sung, accompaniment, break_at, break_seconds)
    ("150 s speech, 25 s pause", 150.0, False, False, 70.0, 25.0),
    ("200 s sung+band", 200.0, True, True, None, 0.0),
    ("150 s sung+band, 25 s music-only break", 150.0, True, True, 70.0, 25.0),
)


def run_long(seed: int = 7):
    """Whole-song checks: accuracy, no word lost or duplicated, monotone times, no word inside a
    break, window count (sonicore only; the peers get one 30 s window at a time)."""
    from sonicore import Aligner
    _threads()
    aligner = Aligner.from_pretrained("tiny.en", device="cpu")
    windows = []
    inner = aligner._align_window

    def counting(*a, **k):
        windows.append(1)
        return inner(*a, **k)

    aligner._align_window = counting
    for name, seconds, sung, band, break_at, break_s in LONG_CASES:
        rng = np.random.default_rng(seed)
        clip = ad.make_long_clip(rng, seconds, sung=sung, accompaniment=band, break_at=break_at,
                                 break_seconds=break_s)
        windows.clear()
        t = time.perf_counter()
        r = aligner.align(clip.audio, clip.lyrics, sr=clip.sr, progress=False)
        wall = time.perf_counter() - t
        starts = [w.start for w in r.words]
        m = ad.metrics(starts, [s for _, s in clip.words])
        ok = len(r.words) == len(clip.words) and all(b >= a for a, b in zip(starts, starts[1:]))
        inside = 0
        if break_at is not None:
            true = [s for _, s in clip.words if s is not None]
            gap = max(zip(true, true[1:]), key=lambda p: p[1] - p[0])
            inside = sum(gap[0] + 2.0 < x < gap[1] - 0.5 for x in starts)
        print(f"{name:40s} {len(clip.audio) / clip.sr:6.1f} s audio, {len(clip.words)} words, "
              f"{len(windows)} windows, {wall:5.1f} s: AAE {m['aae']:.3f} median {m['median']:.3f} "
              f"PCO@0.3 {m['pco_0.3']:.3f}; all words once, monotone: {ok}; words inside the break: {inside}")


def run_memory(seconds=600.0):
    with tempfile.TemporaryDirectory() as d:
        path, clip = long_clip_file(seconds, 99, d)
        txt = os.path.join(d, "lyrics.txt")
        with open(txt, "w") as fh:
            fh.write(clip.lyrics)
        code = ("import resource,sys,torch,sonicore; torch.set_num_threads(2); sonicore.set_num_threads(2);"
                "from sonicore import Aligner; a=Aligner.from_pretrained('tiny.en', device='cpu');"
                f"r=a.align({path!r}, open({txt!r}).read(), progress=False);"
                "print(len(r.words), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env=dict(os.environ))
        words, kb = out.stdout.split()
    print(f"memory: {seconds:.0f} s file ({len(clip.words)} words, {words} aligned) in "
          f"{time.perf_counter() - t:.1f} s, peak RSS {int(kb) / 1024:.0f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--threads", type=int, default=THREADS, help="threads for --speed and --stable-ts (default 2)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds for --speed")
    ap.add_argument("--stable-ts", action="store_true", help="speed ratio against stable-ts on 3 minutes")
    ap.add_argument("--accuracy", type=int, default=0, metavar="N", help="clips per condition")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--long", action="store_true", help="whole-song accuracy checks (150-200 s clips)")
    args = ap.parse_args()
    if args.speed:
        run_speed(rounds=args.rounds, threads=args.threads)
    if args.stable_ts:
        run_stable_ts_speed(threads=args.threads)
    if args.accuracy:
        run_accuracy(args.accuracy)
    if args.memory:
        run_memory()
    if args.long:
        run_long()
