"""Labelled clips for alignment tests and benchmarks, synthesised at run time.

Speech comes from espeak-ng (the library shipped in the PyPI wheel `espeakng-loader`), driven
through ctypes in synchronous mode; its WORD events give the exact sample where each word
starts. Sung variants wrap every word in SSML prosody with its own pitch and rate (a melody
of per-word notes and stretched syllables). Accompaniment, when asked for, is rendered here
with numpy: a chord progression of harmonic tones with envelopes, a bass line and hi-hat
noise bursts, mixed under the voice at a chosen level (fluidsynth is not needed).

Clip = (audio float32 (S,), sample rate, words [(text, start_s)], lyrics text with line breaks).
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

_LOCK = threading.Lock()
_LIB = None
_SR = None

_SENTENCES = [
    "the river runs beneath the silver moon tonight",
    "we were dancing in the kitchen until the morning light",
    "seven little lanterns hanging on the garden wall",
    "nobody told me that the winter would be long",
    "hold on to the feeling when the music starts to play",
    "every road is turning back to you",
    "paper planes are flying over empty streets",
    "I remember nineteen ninety nine like yesterday",
    "call my name and I will follow you home",
    "the stars are falling slowly into the sea",
    "open up the window let the summer in",
    "she sang about the mountains and the rain",
    "a thousand voices singing in the dark",
    "maybe tomorrow we will find a better way",
    "the clock is ticking louder than my heart",
    "run away with me before the sun goes down",
]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_state = {"chunks": [], "events": []}


@_CALLBACK
def _on_synth(wav, n, events):
    if wav and n > 0:
        _state["chunks"].append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    i = 0
    while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
        e = events[i]
        if e.type == 1:  # espeakEVENT_WORD
            _state["events"].append((e.text_position, e.length, e.audio_position))
        i += 1
    return 0


def _lib():
    global _LIB, _SR
    if _LIB is None:
        import espeakng_loader
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        sr = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # AUDIO_OUTPUT_SYNCHRONOUS
        if sr <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        lib.espeak_SetSynthCallback(_on_synth)
        lib.espeak_SetVoiceByName(b"en-us")
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        _LIB, _SR = lib, sr
    return _LIB, _SR


def synthesize(text: str, rate: int = 165, pitch: int = 50, ssml: bool = False) -> Tuple[np.ndarray, int, list]:
    """(audio float32, sr, [(char_pos 0-based, length, start_s)]) for text through espeak-ng."""
    with _LOCK:
        lib, sr = _lib()
        _state["chunks"], _state["events"] = [], []
        lib.espeak_SetParameter(1, rate, 0)   # espeakRATE (words per minute)
        lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH (0-100)
        raw = text.encode("utf-8") + b"\0"
        flags = 1 | (0x10 if ssml else 0)    # espeakCHARS_UTF8 | espeakSSML
        rc = lib.espeak_Synth(raw, len(raw), 0, 1, 0, flags, None, None)
        lib.espeak_Synchronize()
        if rc != 0:
            raise RuntimeError(f"espeak_Synth failed with code {rc}")
        audio = np.concatenate(_state["chunks"]).astype(np.float32) / 32768.0 if _state["chunks"] else np.zeros(0, np.float32)
        events = [(p - 1, n, ms / 1000.0) for p, n, ms in _state["events"]]
    return audio, sr, events


@dataclass
class Clip:
    audio: np.ndarray          # (S,) float32
    sr: int
    words: List[Tuple[str, Optional[float]]]  # (word, start seconds; None: espeak-ng gave no event)
    lyrics: str                # the text given to the aligner (line breaks kept)


def _accompaniment(n: int, sr: int, rng: np.random.Generator, bpm: float = 96.0) -> np.ndarray:
    t = np.arange(n) / sr
    beat = 60.0 / bpm
    roots = [57, 53, 60, 55]  # A minor, F, C, G (MIDI)
    out = np.zeros(n, np.float64)
    bar = 4 * beat
    for k in range(int(np.ceil(n / sr / bar))):
        root = roots[k % 4]
        third = root + (3 if k % 4 == 0 else 4)
        s0, s1 = int(k * bar * sr), min(n, int((k + 1) * bar * sr))
        if s0 >= n:
            break
        tt = t[s0:s1] - t[s0]
        env = np.minimum(1.0, tt / 0.05) * np.exp(-tt / 2.5)
        for note in (root, third, root + 7):
            f = 440.0 * 2 ** ((note - 69) / 12)
            for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)):
                out[s0:s1] += 0.05 * a * env * np.sin(2 * np.pi * f * h * tt + rng.uniform(0, 6.28))
        fb = 440.0 * 2 ** ((root - 24 - 69) / 12)
        for b in range(4):
            b0 = s0 + int(b * beat * sr)
            b1 = min(n, b0 + int(0.9 * beat * sr))
            if b0 >= n:
                break
            tb = t[b0:b1] - t[b0]
            out[b0:b1] += 0.12 * np.exp(-tb / 0.3) * np.sin(2 * np.pi * fb * tb)
    hat_len = int(0.03 * sr)
    for h in range(int(n / sr / (beat / 2))):
        h0 = int(h * beat / 2 * sr)
        if h0 + hat_len >= n:
            break
        out[h0:h0 + hat_len] += 0.03 * rng.standard_normal(hat_len) * np.exp(-np.arange(hat_len) / (0.008 * sr))
    return out.astype(np.float32)


def make_clip(rng: np.random.Generator, n_lines: int = 3, sung: bool = False, accompaniment: bool = False,
              lead_in: float = 0.5, gap: Optional[float] = None, music_level_db: float = -6.0,
              sentences: Sequence[str] = _SENTENCES) -> Clip:
    """One labelled clip of n_lines lyric lines.

    sung: every word gets its own pitch (a random walk on a pentatonic scale) and rate.
    accompaniment: synthetic band under the voice, music_level_db relative to the voice RMS.
    lead_in / gap: seconds of silence (or music only) before the first line / between lines
    (gap None: 0.3-1.0 s random).
    """
    lines = [sentences[i] for i in rng.choice(len(sentences), size=n_lines, replace=n_lines > len(sentences))]
    pieces, words = [], []
    sr = _lib()[1]
    pos = int(lead_in * sr)
    pieces.append(np.zeros(pos, np.float32))
    degree = 0
    for li, line in enumerate(lines):
        ws = line.split()
        offsets = []  # character offset of each word in the text handed to espeak-ng
        if sung:
            text = "<speak>"
            for w in ws:
                degree = int(np.clip(degree + rng.integers(-2, 3), -3, 7))
                semis = [0, 2, 4, 7, 9][degree % 5] + 12 * (degree // 5)
                rate = int(rng.uniform(45, 85))
                text += f'<prosody pitch="+{max(0, 10 * semis)}%" rate="{rate}%">'
                offsets.append(len(text))
                text += f"{w}</prosody> "
            text += "</speak>"
            audio, _, events = synthesize(text, ssml=True, pitch=int(rng.uniform(35, 60)))
        else:
            text = line
            for w in ws:
                offsets.append(text.index(w, offsets[-1] + len(ws[len(offsets) - 1]) if offsets else 0))
            audio, _, events = synthesize(text, rate=int(rng.uniform(150, 190)))
        # espeak-ng sometimes runs two short words into one WORD event ("in the"); such a word
        # has no start of its own and is labelled None (left out of the metrics).
        starts: List[Optional[float]] = [None] * len(ws)
        for char_pos, _, t in events:
            k = int(np.searchsorted(offsets, char_pos, side="right")) - 1
            if 0 <= k < len(ws) and starts[k] is None:
                starts[k] = t
        for w, s in zip(ws, starts):
            words.append((w, None if s is None else (pos + int(round(s * sr))) / sr))
        pieces.append(audio)
        pos += len(audio)
        g = gap if gap is not None else float(rng.uniform(0.3, 1.0))
        pieces.append(np.zeros(int(g * sr), np.float32))
        pos += int(g * sr)
    voice = np.concatenate(pieces)
    if accompaniment:
        music = _accompaniment(len(voice), sr, rng)
        v_rms = np.sqrt(np.mean(voice[voice != 0] ** 2)) if np.any(voice) else 1.0
        m_rms = np.sqrt(np.mean(music ** 2)) + 1e-12
        voice = voice + music * (v_rms / m_rms) * 10 ** (music_level_db / 20)
    voice = (voice / max(1.0, float(np.abs(voice).max()) / 0.95)).astype(np.float32)
    return Clip(voice, sr, words, "\n".join(lines))


def make_long_clip(rng: np.random.Generator, seconds: float, sung: bool = False, accompaniment: bool = False,
                   break_at: Optional[float] = None, break_seconds: float = 0.0) -> Clip:
    """A long clip (about `seconds` of lyrics) of lines with short gaps; with break_at, a
    stretch of break_seconds without words (music-only when accompaniment, else silence)
    is inserted at the first line boundary after break_at seconds."""
    lines, words, pieces, pos = [], [], [], 0
    sr = _lib()[1]
    broke = break_at is None
    while pos < seconds * sr:
        c = make_clip(rng, n_lines=1, sung=sung, accompaniment=False, lead_in=0.0, gap=float(rng.uniform(0.2, 0.8)))
        words += [(w, None if s is None else s + pos / sr) for w, s in c.words]
        lines.append(c.lyrics)
        pieces.append(c.audio)
        pos += len(c.audio)
        if not broke and pos >= break_at * sr:
            pieces.append(np.zeros(int(break_seconds * sr), np.float32))
            pos += int(break_seconds * sr)
            broke = True
    voice = np.concatenate(pieces)
    if accompaniment:
        music = _accompaniment(len(voice), sr, rng)
        v_rms = np.sqrt(np.mean(voice[voice != 0] ** 2))
        voice = voice + music * (v_rms / (np.sqrt(np.mean(music ** 2)) + 1e-12)) * 10 ** (-6 / 20)
        voice = (voice / max(1.0, float(np.abs(voice).max()) / 0.95)).astype(np.float32)
    return Clip(voice.astype(np.float32), sr, words, "\n".join(lines))


def metrics(predicted_starts: Sequence[float], true_starts: Sequence[float]) -> dict:
    """AAE (s), median absolute error (s), PCO@0.3 and PCO@0.1 (share of starts within)."""
    if len(predicted_starts) != len(true_starts):
        raise ValueError(f"{len(predicted_starts)} predicted word starts for {len(true_starts)} true ones")
    pairs = [(a, b) for a, b in zip(predicted_starts, true_starts) if b is not None]
    p, t = np.array([a for a, _ in pairs], float), np.array([b for _, b in pairs], float)
    err = np.abs(p - t)
    return {"aae": float(err.mean()), "median": float(np.median(err)), "pco_0.3": float((err <= 0.3).mean()),
            "pco_0.1": float((err <= 0.1).mean()), "n": int(len(err))}
