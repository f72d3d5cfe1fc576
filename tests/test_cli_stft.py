"""`sonicore stft-roundtrip` on audio the test synthesises (no downloads)."""
import numpy as np
import pytest
import soundfile as sf

from sonicore.cli import main


def _chirp(rng, sr=22050, seconds=0.7):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([x, x[::-1]]).astype(np.float32)


def test_stft_roundtrip_writes_reconstruction(tmp_path, rng, capsys):
    x = _chirp(rng)
    src = tmp_path / "in.wav"
    sf.write(src, x.T, 22050, subtype="FLOAT")
    out = tmp_path / "out.wav"
    assert main(["stft-roundtrip", str(src), "-o", str(out), "--repeats", "1"]) == 0
    y, sr = sf.read(out, dtype="float32", always_2d=True)
    assert sr == 22050 and y.shape == x.T.shape
    assert np.linalg.norm(y.T - x) / np.linalg.norm(x) <= 1e-6
    text = capsys.readouterr().out
    assert "relative L2" in text and "ratio" in text
    # The input is untouched.
    np.testing.assert_array_equal(sf.read(src, dtype="float32", always_2d=True)[0], x.T)


def test_stft_roundtrip_refuses_to_overwrite_input(tmp_path, rng, capsys):
    src = tmp_path / "in.wav"
    sf.write(src, _chirp(rng).T, 22050)
    before = src.read_bytes()
    assert main(["stft-roundtrip", str(src), "-o", str(tmp_path / "." / "in.wav")]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_stft_roundtrip_missing_file(tmp_path, capsys):
    assert main(["stft-roundtrip", str(tmp_path / "nope.wav")]) == 2
    assert "not found" in capsys.readouterr().err


def test_stft_roundtrip_bad_hop(tmp_path, rng, capsys):
    src = tmp_path / "in.wav"
    sf.write(src, _chirp(rng).T, 22050)
    assert main(["stft-roundtrip", str(src), "--n-fft", "512", "--hop", "400"]) == 2
    assert "hop" in capsys.readouterr().err
