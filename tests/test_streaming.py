"""StreamingSTFT / StreamingISTFT: any chunking gives the batch result bitwise (C++ backend)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sonicore.ops import StreamingISTFT, StreamingSTFT, istft, stft

CONFIGS = [
    # n_fft, hop, samples, center, pad_mode, output
    (1024, 256, 20011, True, "reflect", "complex"),
    (400, 160, 3001, True, "constant", "power"),
    (960, 240, 4801, True, "reflect", "log_magnitude"),
    (64, 7, 97, False, "reflect", "magnitude"),
    (256, 100, 1000, True, "reflect", "complex"),
]


def _chunks(rng, total, kind, hop):
    if kind == "one":
        sizes = [1] * total
    elif kind == "hop-1":
        sizes = [hop - 1] * (total // max(hop - 1, 1) + 1)
    else:
        sizes = list(rng.integers(0, 3 * hop, size=total // max(hop, 1) * 2 + 10))
    out, i = [], 0
    for s in sizes:
        if i >= total:
            break
        out.append((i, min(i + int(s), total)))
        i += int(s)
    if i < total:
        out.append((i, total))
    return out


def _stream_stft(x, chunks, **kw):
    s = StreamingSTFT(**kw)
    parts = [s.push(x[a:b]) for a, b in chunks]
    parts.append(s.flush())
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("n_fft,hop,samples,center,pad_mode,output", CONFIGS)
@pytest.mark.parametrize("kind", ["one", "hop-1", "random"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stft_any_chunking_is_bitwise_batch(rng, n_fft, hop, samples, center, pad_mode, output, kind, dtype):
    if kind == "one" and samples > 5000:
        samples = 5000  # one Python call per sample: keep the suite fast
    x = rng.standard_normal(samples).astype(dtype)
    w = (rng.random(n_fft) + 0.1).astype(dtype)
    batch = stft(x, n_fft, hop, window=w, center=center, pad_mode=pad_mode, output=output, backend="cpu")
    got = _stream_stft(x, _chunks(rng, samples, kind, hop), n_fft=n_fft, hop_length=hop, window=w,
                       center=center, pad_mode=pad_mode, output=output, dtype=dtype)
    assert got.shape == batch.shape and got.dtype == batch.dtype
    assert np.array_equal(got, batch, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(n_half=st.sampled_from([8, 32, 200, 240]), hop_div=st.integers(1, 8), extra=st.integers(1, 900),
       seed=st.integers(0, 2**31 - 1))
def test_stft_streaming_property(n_half, hop_div, extra, seed):
    """Random sizes, hops and chunkings (hypothesis): stream == batch bitwise."""
    rng = np.random.default_rng(seed)
    n_fft = 2 * n_half
    hop = max(1, n_fft // hop_div)
    samples = n_fft // 2 + extra
    x = rng.standard_normal(samples).astype(np.float32)
    w = rng.random(n_fft).astype(np.float32)
    batch = stft(x, n_fft, hop, window=w, backend="cpu")
    got = _stream_stft(x, _chunks(rng, samples, "random", hop), n_fft=n_fft, hop_length=hop, window=w)
    assert np.array_equal(got, batch)


def test_frames_come_out_when_their_last_sample_arrives(rng):
    n_fft, hop = 512, 128
    s = StreamingSTFT(n_fft, hop, window=np.hanning(n_fft).astype(np.float32))
    assert s.latency == n_fft // 2
    x = rng.standard_normal(4000).astype(np.float32)
    emitted = 0
    for m in range(1, 4001):
        emitted += s.push(x[m - 1:m]).shape[1]
        # frame t is centred on sample t*hop and needs samples up to t*hop + n_fft/2 - 1
        # (frame 0 with reflect padding also needs sample n_fft/2)
        expected = 0 if m <= n_fft // 2 else (m - n_fft // 2) // hop + 1
        assert emitted == expected, m


def test_copy_and_reset(rng):
    x = rng.standard_normal(10007).astype(np.float32)
    w = np.hanning(1024).astype(np.float32)
    batch = stft(x, 1024, 256, window=w)
    a = StreamingSTFT(1024, 256, window=w)
    first = a.push(x[:5000])
    b = a.copy()
    rest_a = np.concatenate([a.push(x[5000:]), a.flush()], axis=1)
    b.push(rng.standard_normal(10).astype(np.float32))  # b diverges; a must not notice
    b.reset()
    rest_b = np.concatenate([b.push(x), b.flush()], axis=1)
    assert np.array_equal(np.concatenate([first, rest_a], axis=1), batch)
    assert np.array_equal(rest_b, batch)
    c = StreamingSTFT(1024, 256, window=w)
    c.push(x[:5000])
    d = c.copy()
    assert np.array_equal(np.concatenate([first, d.push(x[5000:]), d.flush()], axis=1), batch)


def test_torch_in_torch_out(rng):
    x = torch.from_numpy(rng.standard_normal(3000).astype(np.float32))
    s = StreamingSTFT(256, 64, window=torch.hann_window(256))
    out = s.push(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.complex64 and out.shape[0] == 129
    assert isinstance(s.flush(), torch.Tensor)


@pytest.mark.parametrize("n_fft,hop,frames", [(1024, 256, 83), (400, 160, 31), (960, 240, 17), (64, 7, 50)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_istft_any_chunking_is_bitwise_batch(rng, n_fft, hop, frames, dtype):
    cdt = np.complex64 if dtype == np.float32 else np.complex128
    spec = (rng.standard_normal((n_fft // 2 + 1, frames)) + 1j * rng.standard_normal((n_fft // 2 + 1, frames))).astype(cdt)
    w = (rng.random(n_fft) + 0.1).astype(dtype)
    batch = istft(spec, n_fft, hop, window=w, backend="cpu")
    for sizes in ([1] * frames, list(rng.integers(0, 5, size=4 * frames))):
        s = StreamingISTFT(n_fft, hop, window=w, dtype=dtype)
        parts, t = [], 0
        for k in sizes:
            if t >= frames:
                break
            parts.append(s.push(spec[:, t:t + int(k)]))
            t += int(k)
        parts.append(s.push(spec[:, t:]))
        parts.append(s.flush())
        got = np.concatenate(parts)
        assert got.dtype == dtype and np.array_equal(got, batch)


def test_istft_flush_length_and_latency(rng):
    n_fft, hop, samples = 512, 128, 9001
    x = rng.standard_normal(samples).astype(np.float32)
    w = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    spec = stft(x, n_fft, hop, window=w)
    for length in (samples, samples - 50, samples + 300):
        s = StreamingISTFT(n_fft, hop, window=w)
        assert s.latency == n_fft - hop
        got = np.concatenate([s.push(spec[:, :40]), s.push(spec[:, 40:]), s.flush(length)])
        assert np.array_equal(got, istft(spec, n_fft, hop, window=w, length=length, backend="cpu"))
    np.testing.assert_allclose(got[:samples], x, atol=1e-5)


def test_stream_round_trip_float32(rng):
    x = rng.standard_normal(44100).astype(np.float32)
    w = np.hanning(1025)[:-1].astype(np.float32)
    a, b = StreamingSTFT(1024, 256, window=w), StreamingISTFT(1024, 256, window=w)
    out = []
    for i in range(0, len(x), 300):
        out.append(b.push(a.push(x[i:i + 300])))
    out.append(b.push(a.flush()))
    out.append(b.flush(len(x)))
    y = np.concatenate(out)
    assert np.linalg.norm(y - x) / np.linalg.norm(x) <= 1e-6


class TestBadInput:
    def test_push_checks(self):
        s = StreamingSTFT(64, 16)
        with pytest.raises(TypeError, match="float32"):
            s.push(np.zeros(10))
        with pytest.raises(ValueError, match="1-D"):
            s.push(np.zeros((2, 10), np.float32))
        with pytest.raises(TypeError, match="numpy array or torch tensor"):
            s.push([0.0])
        s.push(np.zeros(10, np.float32))
        with pytest.raises(ValueError, match="reflect padding"):
            s.flush()

    def test_constructor_checks(self):
        with pytest.raises(ValueError, match="even"):
            StreamingSTFT(63, 16)
        with pytest.raises(ValueError, match="win_length"):
            StreamingSTFT(64, 16, window=np.ones(10))
        with pytest.raises(TypeError, match="dtype"):
            StreamingSTFT(64, 16, dtype="int16")
        with pytest.raises(ValueError, match="overlap-add"):
            StreamingISTFT(64, 64, window=np.hanning(64))
        s = StreamingISTFT(64, 16, window=np.hanning(64))
        with pytest.raises(TypeError, match="complex64"):
            s.push(np.zeros((33, 2), np.complex128))
        with pytest.raises(ValueError, match="shape"):
            s.push(np.zeros((30, 2), np.complex64))
        with pytest.raises(ValueError, match="no frames"):
            s.flush()


def test_concurrent_pushes_to_one_stream_are_serialised(rng):
    """Pushes run without the GIL; a per-stream lock keeps threads sharing a stream safe."""
    import threading

    s = StreamingSTFT(512, 128, window=np.hanning(512).astype(np.float32))
    chunk = rng.standard_normal(128).astype(np.float32)
    counts = []

    def run():
        n = 0
        for _ in range(500):
            n += s.push(chunk).shape[1]
            s.copy()
        counts.append(n)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = 4 * 500 * 128
    assert sum(counts) == (total - 256) // 128 + 1  # every completed frame exactly once
