"""sonicore.io.audio: reading real files written by soundfile, resampling vs soxr, errors."""
import numpy as np
import pytest
import soundfile as sf
import soxr

from sonicore.io.audio import load_audio, save_audio


def test_load_matches_soundfile_layout(tmp_path, rng):
    x = (rng.standard_normal((1009, 3)) * 0.2).astype(np.float32)  # (samples, channels), prime length
    p = tmp_path / "a.wav"
    sf.write(p, x, 22050, subtype="FLOAT")
    audio, sr = load_audio(p)
    assert sr == 22050 and audio.dtype == np.float32 and audio.shape == (3, 1009)
    np.testing.assert_array_equal(audio, x.T)
    mono, _ = load_audio(str(p), mono=True)
    np.testing.assert_allclose(mono[0], x.mean(axis=1), rtol=1e-6, atol=1e-7)


def test_resample_equals_soxr(tmp_path, rng):
    x = (rng.standard_normal((4801, 2)) * 0.1).astype(np.float32)
    p = tmp_path / "b.flac"
    sf.write(p, x, 48000, subtype="PCM_24")
    ref, _ = sf.read(p, dtype="float32", always_2d=True)
    audio, sr = load_audio(p, sr=16000)
    assert sr == 16000
    np.testing.assert_allclose(audio, soxr.resample(ref, 48000, 16000, quality="HQ").T, rtol=0, atol=1e-6)


def test_save_roundtrip(tmp_path, rng):
    x = (rng.standard_normal(97) * 0.3).astype(np.float32)
    p = tmp_path / "c.wav"
    save_audio(p, x, 8000, subtype="FLOAT")
    y, sr = sf.read(p, dtype="float32")
    assert sr == 8000
    np.testing.assert_array_equal(y, x)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(ValueError, match="could not read"):
        load_audio(bad)
    with pytest.raises(ValueError, match="directory"):
        load_audio(tmp_path)
    with pytest.raises(ValueError, match="positive integer"):
        load_audio(bad, sr=0)
    with pytest.raises(TypeError, match="file path"):
        load_audio(123)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ValueError, match="no samples"):
        load_audio(empty)
