"""Reading and writing audio files (soundfile), with optional resampling (soxr).

Arrays follow DESIGN.md: float32, shape (channels, samples); the sample rate travels
beside the array and is never guessed.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np


def load_audio(path, sr: Optional[int] = None, mono: bool = False) -> Tuple[np.ndarray, int]:
    """Reads an audio file.

    Args:
        path: file path (str or os.PathLike); any format libsndfile reads (wav, flac, ogg, mp3...).
        sr: target sample rate in Hz; when given and different from the file's, the audio is
            resampled with soxr (high quality). None keeps the file's rate.
        mono: average the channels into one.

    Returns:
        (audio, sr): audio is float32 of shape (channels, samples) ((1, samples) when mono),
        sr the sample rate of the returned audio in Hz.

    Raises:
        FileNotFoundError when the path does not exist; ValueError when the file cannot be
        decoded or holds no samples, or when sr is not a positive integer.
    """
    import soundfile as sf

    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"load_audio expects a file path, got {type(path).__name__}")
    if sr is not None and (isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0):
        raise ValueError(f"sr must be a positive integer sample rate in Hz or None, got {sr!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"expected an audio file, got a directory: {path}")
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise ValueError(f"could not read {path} as audio ({exc}); expected a format libsndfile "
                         "decodes (wav, flac, ogg, mp3, aiff...)") from exc
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} holds no samples")
    # soundfile gives (samples, channels); we keep (channels, samples).
    audio = np.ascontiguousarray(data.T)
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True, dtype=np.float32)
    if sr is not None and int(sr) != file_sr:
        import soxr
        audio = np.ascontiguousarray(
            soxr.resample(audio.T, file_sr, int(sr), quality="HQ").T.astype(np.float32, copy=False))
        file_sr = int(sr)
    return audio, int(file_sr)


def save_audio(path, audio, sr: int, subtype: Optional[str] = None) -> None:
    """Writes audio (float array of shape (channels, samples) or (samples,)) at sr Hz.

    The format comes from the file extension (soundfile); subtype e.g. "PCM_16" or "FLOAT"
    (default: soundfile's default for the format).
    """
    import soundfile as sf

    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"audio must have shape (channels, samples) or (samples,) with samples > 0, got {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"audio must be a float array, got {a.dtype}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    sf.write(os.fspath(path), a.T, int(sr), subtype=subtype)
