"""The MMAudio / MMAudioSep flow-prediction network (arXiv 2412.15322, 2510.09065).

Independent implementation from the published description; parameter names follow the official
state dicts so that released checkpoints load unchanged.

Shapes (B batch; N latent frames; Nc clip frames; Ns sync frames, a multiple of 8; Nt text tokens):
  x_t (B, N, latent_dim) channel-last, normalised latent space; t (B,) in [0, 1];
  clip_f (B, Nc, clip_dim); sync_f (B, Ns, sync_dim); text_f (B, Nt, text_dim);
  MMAudioSep: x_mix (B, N, latent_dim).
Sequence lengths come from the inputs: any duration works, RoPE tables are rebuilt (and cached) per
(N, Nc) pair, clip positions are scaled by N/Nc.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FinalLayer, FusedBlock, JointBlock
from .config import SYNC_SEGMENT, MMAudioConfig, ffn_width
from .embeddings import TimestepEmbedder
from ...ops import nn as nnops
from .layers import CONV_ALGORITHMS, WINOGRAD_BUDGET, WINOGRAD_TILE, ChannelLastConv1d, GatedFeedForward, ValidFrames, _matrix, ensure_packed, ensure_packed_bias
from .rope import rope_table


@dataclasses.dataclass
class PreprocessedConditions:
    """Conditions after the input projections, reusable across sampler steps.

    clip_f (B, Nc, D); sync_f (B, N, D) already resampled to the latent length; text_f (B, Nt, D);
    clip_f_c, text_f_c (B, D) pooled global vectors.
    """
    clip_f: torch.Tensor
    sync_f: torch.Tensor
    text_f: torch.Tensor
    clip_f_c: torch.Tensor
    text_f_c: torch.Tensor
    # Valid lengths of a padded batch: fields of PaddedConditions only (None here).
    latent_lens = None
    clip_lens = None

    def _fields(self):
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    def expand(self, batch: int) -> "PreprocessedConditions":
        return type(self)(*(t.expand(batch, *t.shape[1:]) for t in self._fields()))

    def cat(self, other: "PreprocessedConditions") -> "PreprocessedConditions":
        if type(self) is not type(other):
            raise ValueError("cannot batch padded (variable-duration) conditions with unpadded ones")
        return type(self)(*(torch.cat([a, b], 0) for a, b in zip(self._fields(), other._fields())))


@dataclasses.dataclass
class PaddedConditions(PreprocessedConditions):
    """PreprocessedConditions of a batch of different durations, padded to the longest row.

    latent_lens, clip_lens: (B,) int64 CPU tensors, the valid latent / clip frames of each row
    (sync_f is resampled per row to its latent length and zero past it).
    """
    latent_lens: torch.Tensor = None
    clip_lens: torch.Tensor = None


def _check_lens(lens, name: str, batch: int, limit: int, multiple: int = 1) -> Optional[torch.Tensor]:
    """(B,) valid lengths -> int64 CPU tensor, checked to lie in [1, limit] (and be a multiple of
    `multiple`); None stays None."""
    if lens is None:
        return None
    t = torch.as_tensor(lens).detach().to("cpu")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"{name} must be {batch} integers (one valid length per batch row), got {lens!r}")
    t = t.to(torch.int64)
    if int(t.min()) < 1 or int(t.max()) > limit or bool((t % multiple != 0).any()):
        what = f"multiples of {multiple} " if multiple > 1 else ""
        raise ValueError(f"{name} must be {what}in [1, {limit}] (the padded length), got {t.tolist()}")
    return t


def _masked_proj(seq: nn.Sequential, x: torch.Tensor, valid: ValidFrames) -> torch.Tensor:
    """Runs an input projection on a padded batch: every convolution reads zeros past each row's end
    (as a clip of its own length would), and the result is zero on the padding."""
    x = torch.where(valid.frames > 0, x, 0)  # whatever the caller left in the padding (even NaN) is dropped
    for m in seq:
        if isinstance(m, ChannelLastConv1d):
            k = m.kernel_size
            x = m(valid.mask_taps(nnops.taps_layout(x, k), k), tapped=True)
        elif isinstance(m, GatedFeedForward) and m.kernel_size is not None:
            x = m(x, valid=valid)
        else:
            x = m(x)
    return x * valid.frames


def resample_sync(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, S, D) -> (B, length, D) by nearest-exact resampling along time, as the original does: source
    index floor((i + 0.5) * S / length) computed in float32 (torch's interpolate), clamped to S-1."""
    if x.shape[1] == length:
        return x
    return F.interpolate(x.transpose(1, 2), size=length, mode="nearest-exact").transpose(1, 2)


class _Proj(nn.Sequential):
    """nn.Sequential whose indices match the original keys (activations hold no weights)."""


def _act(v2: bool) -> nn.Module:
    return nn.SiLU() if v2 else nn.SELU()


class MMAudioNetwork(nn.Module):
    """The flow network. forward(x_t, clip_f, sync_f, text_f[, x_mix], t) -> velocity (B, N, latent_dim).

    Build it with `sonicore.models.mmaudio.load(...)` (weights from a checkpoint) or from a
    MMAudioConfig (random-initialised parameters must then be filled by load_state_dict).
    """

    def __init__(self, cfg: MMAudioConfig):
        super().__init__()
        self.cfg = cfg
        D, v2 = cfg.hidden_dim, cfg.v2
        hidden_in = ffn_width(4 * D)
        in_ch = cfg.latent_dim * (2 if cfg.separation else 1)
        self.audio_input_proj = _Proj(ChannelLastConv1d(in_ch, D, 7), _act(v2),
                                      GatedFeedForward(D, hidden_in, 7))
        if v2:
            self.clip_input_proj = _Proj(nn.Linear(cfg.clip_dim, D), nn.SiLU(), GatedFeedForward(D, hidden_in, 3))
            self.text_input_proj = _Proj(nn.Linear(cfg.text_dim, D), nn.SiLU(), GatedFeedForward(D, hidden_in))
        else:
            self.clip_input_proj = _Proj(nn.Linear(cfg.clip_dim, D), GatedFeedForward(D, hidden_in, 3))
            self.text_input_proj = _Proj(nn.Linear(cfg.text_dim, D), GatedFeedForward(D, hidden_in))
        self.sync_input_proj = _Proj(ChannelLastConv1d(cfg.sync_dim, D, 7), _act(v2),
                                     GatedFeedForward(D, hidden_in, 3))
        self.clip_cond_proj = nn.Linear(D, D)
        self.text_cond_proj = nn.Linear(D, D)
        self.global_cond_mlp = GatedFeedForward(D, hidden_in)
        if v2:
            self.t_embed = TimestepEmbedder(D, frequency_dim=D, max_period=1)
        else:
            self.t_embed = TimestepEmbedder(D, frequency_dim=256, max_period=10000)
        ffn_hidden = ffn_width(int(cfg.mlp_ratio * D))
        nj = cfg.joint_depth
        self.joint_blocks = nn.ModuleList(
            JointBlock(D, cfg.num_heads, ffn_hidden, pre_only=(i == nj - 1)) for i in range(nj))
        self.fused_blocks = nn.ModuleList(FusedBlock(D, cfg.num_heads, ffn_hidden) for _ in range(cfg.fused_depth))
        self.final_layer = FinalLayer(D, cfg.latent_dim)
        self.set_conv_algorithm("auto")
        self.sync_pos_emb = nn.Parameter(torch.zeros(1, 1, SYNC_SEGMENT, cfg.sync_dim))
        self.empty_string_feat = nn.Parameter(torch.zeros(cfg.text_seq_len, cfg.text_dim))
        self.empty_clip_feat = nn.Parameter(torch.zeros(1, cfg.clip_dim))
        self.empty_sync_feat = nn.Parameter(torch.zeros(1, cfg.sync_dim))
        self.latent_mean = nn.Parameter(torch.zeros(1, 1, cfg.latent_dim))
        self.latent_std = nn.Parameter(torch.ones(1, 1, cfg.latent_dim))
        self._rope_cache: Dict[tuple, tuple] = {}
        self._rows_cache = None
        self._workspaces: Dict[int, dict] = {}  # thread id -> reusable buffers (see _workspace)
        # When a dict, predict_flow stores its intermediate activations there (parity checks).
        self.record: Optional[Dict[str, torch.Tensor]] = None

    # ------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        return self.clip_cond_proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.clip_cond_proj.weight.device

    def _apply(self, fn, recurse=True):
        self._rope_cache = {}
        self._rows_cache = None
        self._workspaces = {}
        return super()._apply(fn, recurse)

    def rope_tables(self, latent_len: int, clip_len: int):
        """(latent_rot, clip_rot) float32 tables of shape (1, L, hd/2, 2, 2) for these lengths."""
        key = (latent_len, clip_len, str(self.device))
        if key not in self._rope_cache:
            hd = self.cfg.head_dim
            self._rope_cache[key] = (rope_table(latent_len, hd, device=self.device),
                                     rope_table(clip_len, hd, scale=latent_len / clip_len, device=self.device))
        return self._rope_cache[key]

    def _check(self, name: str, x: torch.Tensor, dim: int, rank: int = 3):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if x.dim() != rank or x.shape[-1] != dim:
            raise ValueError(f"{name} must have shape (B, frames, {dim}), got {tuple(x.shape)}")

    # ------------------------------------------------------------------ conditions
    def preprocess_conditions(self, clip_f: torch.Tensor, sync_f: torch.Tensor, text_f: torch.Tensor,
                              latent_len: int, *, latent_lens=None, clip_lens=None,
                              sync_lens=None) -> PreprocessedConditions:
        """Projects the conditions once per call (reused by every sampler step).

        clip_f (B, Nc, clip_dim); sync_f (B, Ns, sync_dim) with Ns a multiple of 8; text_f (B, Nt, text_dim);
        latent_len N: the sync stream is resampled (nearest-exact) to N frames.
        Batches of different durations: latent_lens, clip_lens, sync_lens are (B,) valid frame counts
        (sync ones multiples of 8) of rows padded to N, Nc, Ns (omitted ones: the full length); row b
        then gives exactly what it gives alone at its own lengths (sync resampled to latent_lens[b]).
        """
        cfg = self.cfg
        self._check("clip_f", clip_f, cfg.clip_dim)
        self._check("sync_f", sync_f, cfg.sync_dim)
        self._check("text_f", text_f, cfg.text_dim)
        if not (clip_f.shape[0] == sync_f.shape[0] == text_f.shape[0]):
            raise ValueError(f"clip_f, sync_f and text_f must share the batch size, got "
                             f"{clip_f.shape[0]}, {sync_f.shape[0]}, {text_f.shape[0]}")
        B, Ns, _ = sync_f.shape
        if Ns % SYNC_SEGMENT or Ns == 0:
            raise ValueError(f"sync_f must hold a positive multiple of {SYNC_SEGMENT} frames "
                             f"(Synchformer segments), got {Ns}")
        if clip_f.shape[1] == 0 or text_f.shape[1] == 0:
            raise ValueError("clip_f and text_f need at least one frame/token")
        dt = self.dtype
        clip_f, sync_f, text_f = clip_f.to(dt), sync_f.to(dt), text_f.to(dt)
        Nc = clip_f.shape[1]
        lat = _check_lens(latent_lens, "latent_lens", B, latent_len)
        cl = _check_lens(clip_lens, "clip_lens", B, Nc)
        sl = _check_lens(sync_lens, "sync_lens", B, Ns, SYNC_SEGMENT)
        if lat is not None or cl is not None or sl is not None:
            full = lambda t, n: torch.full((B,), n, dtype=torch.int64) if t is None else t  # noqa: E731
            lat, cl, sl = full(lat, latent_len), full(cl, Nc), full(sl, Ns)
            if bool((lat < latent_len).any() or (cl < Nc).any() or (sl < Ns).any()):
                return self._preprocess_padded(clip_f, sync_f, text_f, latent_len, lat, cl, sl)
        sync_f = (sync_f.view(B, Ns // SYNC_SEGMENT, SYNC_SEGMENT, -1) + self.sync_pos_emb).flatten(1, 2)
        sync_f = self.sync_input_proj(sync_f)
        sync_f = resample_sync(sync_f, latent_len)
        clip_f = self.clip_input_proj(clip_f)
        text_f = self.text_input_proj(text_f)
        return PreprocessedConditions(clip_f, sync_f, text_f, self.clip_cond_proj(clip_f.mean(1)),
                                      self.text_cond_proj(text_f.mean(1)))

    def _preprocess_padded(self, clip_f, sync_f, text_f, latent_len, lat, cl, sl) -> PreprocessedConditions:
        """preprocess_conditions for rows of different lengths (lat, cl, sl: (B,) valid counts)."""
        B, Ns, _ = sync_f.shape
        sync_f = (sync_f.view(B, Ns // SYNC_SEGMENT, SYNC_SEGMENT, -1) + self.sync_pos_emb).flatten(1, 2)
        sync_f = _masked_proj(self.sync_input_proj, sync_f, ValidFrames(sl, Ns, sync_f))
        # Each row is resampled from its own sync length to its own latent length.
        sync = sync_f.new_zeros(B, latent_len, sync_f.shape[-1])
        for b in range(B):
            n = int(lat[b])
            sync[b:b + 1, :n] = resample_sync(sync_f[b:b + 1, :int(sl[b])], n)
        clip_f = _masked_proj(self.clip_input_proj, clip_f, ValidFrames(cl, clip_f.shape[1], clip_f))
        text_f = self.text_input_proj(text_f)
        clip_mean = clip_f.sum(1) / cl.to(clip_f.device, clip_f.dtype)[:, None]
        return PaddedConditions(clip_f, sync, text_f, self.clip_cond_proj(clip_mean),
                                self.text_cond_proj(text_f.mean(1)), lat, cl)

    def empty_conditions(self, clip_len: int, sync_len: int, latent_len: int, *, latent_lens=None,
                         clip_lens=None, sync_lens=None) -> PreprocessedConditions:
        """Learned empty features (the unconditional branch), preprocessed at batch 1 (or, given the
        (B,) valid lengths of a padded batch, at batch B with those lengths)."""
        given = [x for x in (latent_lens, clip_lens, sync_lens) if x is not None]
        B = len(given[0]) if given else 1
        clip = self.empty_clip_feat.expand(clip_len, -1)[None].expand(B, -1, -1)
        sync = self.empty_sync_feat.expand(sync_len, -1)[None].expand(B, -1, -1)
        text = self.empty_string_feat[None].expand(B, -1, -1)
        return self.preprocess_conditions(clip, sync, text, latent_len, latent_lens=latent_lens,
                                          clip_lens=clip_lens, sync_lens=sync_lens)

    # ------------------------------------------------------------------ flow
    def predict_flow(self, x_t: torch.Tensor, t: torch.Tensor, cond: PreprocessedConditions,
                     x_mix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Velocity for x_t (B, N, latent_dim) at times t (B,) under preprocessed conditions."""
        cfg = self.cfg
        self._check("x_t", x_t, cfg.latent_dim)
        B, N, _ = x_t.shape
        if cond.sync_f.shape[1] != N:
            raise ValueError(f"the conditions were preprocessed for {cond.sync_f.shape[1]} latent frames, "
                             f"x_t has {N}")
        if cfg.separation:
            if x_mix is None:
                raise ValueError("MMAudioSep needs the mixture latent x_mix (B, N, latent_dim)")
            self._check("x_mix", x_mix, cfg.latent_dim)
            if x_mix.shape[:2] != x_t.shape[:2]:
                raise ValueError(f"x_mix must match x_t's shape {tuple(x_t.shape)}, got {tuple(x_mix.shape)}")
            x_t = torch.cat([x_t, x_mix.to(x_t.dtype)], dim=-1)
        elif x_mix is not None:
            raise ValueError("x_mix is only taken by MMAudioSep networks; this is a plain MMAudio network")
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"t must be a scalar or have shape ({B},), got {tuple(t.shape)}")
        dt = self.dtype
        rec = self.record
        x_t = x_t.to(dt)
        h = B // 2
        if cond.latent_lens is not None:
            return self._predict_flow_padded(x_t, t, cond)
        # CPU only: the check syncs with the host, which a CUDA graph capture cannot contain.
        if x_t.device.type == "cpu" and B % 2 == 0 and B > 0 and torch.equal(x_t[:h], x_t[h:]):
            # Guidance batches repeat the same latent (and mixture) in both halves: project it once.
            half = self.audio_input_proj(x_t[:h])
            latent = torch.cat([half, half])
        else:
            latent = self.audio_input_proj(x_t)
        clip_f, text_f = cond.clip_f, cond.text_f
        latent_rot, clip_rot = self.rope_tables(N, clip_f.shape[1])
        t_emb = self.t_embed(t)
        g = self.global_cond_mlp(cond.clip_f_c + cond.text_f_c)
        global_c = (t_emb + g)[:, None]
        if rec is not None:
            rec.update({"audio_input_proj": latent, "t_embed": t_emb, "global_cond_mlp": g})
        tok_mods, glob_mods = self._modulations(global_c, cond.sync_f)
        for i, block in enumerate(self.joint_blocks):
            latent, clip_f, text_f = block(latent, clip_f, text_f, (tok_mods[i], glob_mods[2 * i], glob_mods[2 * i + 1]),
                                           latent_rot, clip_rot)
            if rec is not None:
                rec.update({f"joint_blocks.{i}.latent": latent, f"joint_blocks.{i}.clip_f": clip_f,
                            f"joint_blocks.{i}.text_f": text_f})
        nj = len(self.joint_blocks)
        for i, block in enumerate(self.fused_blocks):
            latent = block(latent, tok_mods[nj + i], latent_rot)
            if rec is not None:
                rec[f"fused_blocks.{i}"] = latent
        return self.final_layer(latent, glob_mods[-1])

    def _predict_flow_padded(self, x_t: torch.Tensor, t: torch.Tensor, cond: PreprocessedConditions):
        """predict_flow for a batch of different durations padded to the longest (cond.latent_lens,
        cond.clip_lens): convolutions see zeros past each row's end, the joint attention sees only each
        row's valid tokens, clip RoPE positions use each row's own latent/clip ratio. The velocity is
        zero on padding. Each row equals the same row run alone at its own lengths."""
        B, N, _ = x_t.shape
        clip_f, text_f = cond.clip_f, cond.text_f
        Nc = clip_f.shape[1]
        lat = _check_lens(cond.latent_lens, "latent_lens", B, N)
        cl = _check_lens(cond.clip_lens, "clip_lens", B, Nc)
        lat_v, clip_v = ValidFrames(lat, N, x_t), ValidFrames(cl, Nc, clip_f)
        h = B // 2
        # As in predict_flow: guided batches repeat the latent (and lengths) in both halves (CPU only).
        if x_t.device.type == "cpu" and B % 2 == 0 and B > 0 and torch.equal(lat[:h], lat[h:]) and \
                torch.equal(x_t[:h], x_t[h:]):
            half = _masked_proj(self.audio_input_proj, x_t[:h], ValidFrames(lat[:h], N, x_t))
            latent = torch.cat([half, half])
        else:
            latent = _masked_proj(self.audio_input_proj, x_t, lat_v)
        # RoPE positions are 0.. per row, so the latent table of the longest row serves every row;
        # the clip positions are scaled by each row's own latent/clip length ratio.
        latent_rot = self.rope_tables(N, Nc)[0]
        pairs = list(zip(lat_v.list, clip_v.list))
        clip_rot = [self._clip_rope(Nc, n, c) for n, c in pairs]
        if len(set(pairs)) == 1:
            clip_rot = clip_rot[0]  # one ratio for every row: one table, one kernel call
        t_emb = self.t_embed(t)
        g = self.global_cond_mlp(cond.clip_f_c + cond.text_f_c)
        global_c = (t_emb + g)[:, None]
        tok_mods, glob_mods = self._modulations(global_c, cond.sync_f)
        pad = (lat_v, clip_v)
        for i, block in enumerate(self.joint_blocks):
            latent, clip_f, text_f = block(latent, clip_f, text_f, (tok_mods[i], glob_mods[2 * i], glob_mods[2 * i + 1]),
                                           latent_rot, clip_rot, pad)
        nj = len(self.joint_blocks)
        for i, block in enumerate(self.fused_blocks):
            latent = block(latent, tok_mods[nj + i], latent_rot, lat_v)
        return self.final_layer(latent, glob_mods[-1], lat_v)

    def _clip_rope(self, padded: int, latent_len: int, clip_len: int) -> torch.Tensor:
        """Clip RoPE table of `padded` rows whose first clip_len rows equal rope_tables(latent_len,
        clip_len)[1] (positions scaled by latent_len / clip_len)."""
        key = ("clip", padded, latent_len, clip_len, str(self.device))
        if key not in self._rope_cache:
            self._rope_cache[key] = rope_table(padded, self.cfg.head_dim, scale=latent_len / clip_len,
                                               device=self.device)
        return self._rope_cache[key]

    def _modulation_layers(self):
        """(per-token adaLN linears: latent + fused blocks; global ones: clip, text blocks, final layer)."""
        tok = [b.latent_block.adaLN_modulation[1] for b in self.joint_blocks] + \
              [b.adaLN_modulation[1] for b in self.fused_blocks]
        glob = [lin for b in self.joint_blocks for lin in (b.clip_block.adaLN_modulation[1],
                                                            b.text_block.adaLN_modulation[1])]
        return tok, glob + [self.final_layer.adaLN_modulation[1]]

    def _distinct_rows(self, sync_f: torch.Tensor):
        """(rows, inverse) such that sync_f.view(B*N, D)[rows][inverse] == sync_f.view(B*N, D), rows taken
        per batch entry; None when deduplication would not pay. Cached per conditions tensor."""
        key = (sync_f.data_ptr(), tuple(sync_f.shape), sync_f._version, str(sync_f.device))
        if self._rows_cache is not None and self._rows_cache[0] == key:
            return self._rows_cache[1]
        B, N, D = sync_f.shape
        rows, inverse = [], []
        for b in range(B):
            _, inv = torch.unique(sync_f[b], dim=0, return_inverse=True)
            first = torch.full((int(inv.max()) + 1,), N, dtype=torch.long, device=sync_f.device)
            first.scatter_reduce_(0, inv, torch.arange(N, device=sync_f.device), reduce="amin")
            inverse.append(inv + sum(len(r) for r in rows))
            rows.append(first + b * N)
        rows, inverse = torch.cat(rows), torch.cat(inverse)
        result = (rows, inverse) if rows.numel() <= 0.8 * B * N else None
        self._rows_cache = (key, result)
        return result

    def _workspace(self, name: str, shape, like: torch.Tensor) -> torch.Tensor:
        """A buffer reused across evaluations by this thread (it must not outlive one evaluation)."""
        ws = self._workspaces.setdefault(threading.get_ident(), {})
        buf = ws.get(name)
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != like.dtype or buf.device != like.device:
            buf = ws[name] = like.new_empty(shape)
        return buf

    def _modulations(self, global_c: torch.Tensor, sync_f: torch.Tensor):
        """Every block's adaLN modulation in two GEMMs: the per-token ones on silu(global_c + sync_f)
        (B, N, D), the global ones on silu(global_c) (B, 1, D). Their weights live side by side in one
        buffer (packed once), so this is one wide GEMM each instead of one per block. The per-token GEMM
        runs only on the distinct rows of the sync condition (nearest-exact upsampling repeats rows, and
        the learned empty sync feature is periodic) and is gathered back: the result is exactly the same.
        Returns two lists of (B, N or 1, k*D) views, in _modulation_layers order."""
        out = []
        B, N, D = sync_f.shape
        for lins, which in zip(self._modulation_layers(), ("token", "global")):
            weights = [lin.weight for lin in lins]
            ensure_packed(*weights)
            bias = ensure_packed_bias(*[lin.bias for lin in lins])
            if which == "global":
                c = F.silu(global_c).reshape(B, D)
                m = torch.addmm(bias, c, _matrix(weights)).view(B, 1, -1)
            else:
                # CPU only: finding the distinct rows syncs with the host (no CUDA graphs), and a graph
                # replayed with other conditions would reuse a stale row map.
                distinct = self._distinct_rows(sync_f) if sync_f.device.type == "cpu" else None
                if distinct is None:
                    c = F.silu(global_c + sync_f).reshape(B * N, D)
                    m = torch.addmm(bias, c, _matrix(weights)).view(B, N, -1)
                else:
                    rows, inverse = distinct
                    flat = sync_f.reshape(B * N, D)[rows]
                    c = F.silu(flat + global_c.reshape(B, D)[rows // N])
                    small = torch.addmm(bias, c, _matrix(weights))
                    # The gathered result is large (B*N rows of every block's 6D): a fresh allocation of
                    # that size is mmapped by malloc and page-faulted on every call (~20 ms per 43 MB
                    # here), so it lands in a buffer kept per thread and reused by the next evaluation.
                    m = torch.index_select(small, 0, inverse, out=self._workspace("modulation", (B * N, small.shape[1]),
                                                                                  small)).view(B, N, -1)
            out.append(list(m.split([lin.weight.shape[0] for lin in lins], dim=-1)))
        return out

    def forward(self, x_t, clip_f, sync_f, text_f, *rest):
        """forward(x_t, clip_f, sync_f, text_f, t) or, for MMAudioSep, (x_t, clip_f, sync_f, text_f, x_mix, t):
        the original's call signature. Returns the velocity (B, N, latent_dim)."""
        if self.cfg.separation:
            if len(rest) != 2:
                raise TypeError("MMAudioSep forward takes (x_t, clip_f, sync_f, text_f, x_mix, t)")
            x_mix, t = rest
        else:
            if len(rest) != 1:
                raise TypeError("MMAudio forward takes (x_t, clip_f, sync_f, text_f, t)")
            x_mix, t = None, rest[0]
        cond = self.preprocess_conditions(clip_f, sync_f, text_f, x_t.shape[1])
        return self.predict_flow(x_t, t, cond, x_mix)

    # ------------------------------------------------------------------ latent scaling
    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised latent (B, N, C) -> VAE latent space: x*latent_std + latent_mean."""
        return x * self.latent_std + self.latent_mean

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """VAE latent (B, N, C) -> the network's normalised space."""
        return (x - self.latent_mean) / self.latent_std

    def winograd_weight_bytes(self) -> int:
        """Bytes the Winograd-transformed convolution weights take in float32 (kept beside the weights)."""
        total = 0
        for m in self.modules():
            if isinstance(m, ChannelLastConv1d) and m.kernel_size in WINOGRAD_TILE:
                k = m.kernel_size
                total += m.weight.numel() // k * (WINOGRAD_TILE[k] + k - 1) * 4
        return total

    def set_conv_algorithm(self, algorithm: str, winograd_budget: int = WINOGRAD_BUDGET) -> "MMAudioNetwork":
        """How the kernel-3 (and kernel-7 input) convolutions run:
        "auto" (default): Winograd F(4, 3) / F(2, 7) for float32 on the CPU — half the GEMM work of the
        im2col GEMM, within ~2e-6 of the output scale of it — when its transformed weights, kept beside
        the originals, take at most `winograd_budget` bytes (default 1 GiB: small_16k / small_44k need
        0.84 GB; medium_44k 3.3 GB and large_44k 5.6 GB stay on im2col); the im2col GEMM otherwise.
        "winograd": Winograd for float32 whatever the size and device (transforms in torch off the CPU).
        "im2col": one GEMM on the im2col taps everywhere."""
        if algorithm not in CONV_ALGORITHMS:
            raise ValueError(f"conv algorithm must be one of {CONV_ALGORITHMS}, got {algorithm!r}")
        self.conv_algorithm = algorithm
        resolved = algorithm
        if algorithm == "auto" and self.winograd_weight_bytes() > winograd_budget:
            resolved = "im2col"
        for m in self.modules():
            if isinstance(m, (ChannelLastConv1d, GatedFeedForward)):
                m.conv_algorithm = resolved
                m.__dict__.pop("_winograd_cache", None)  # frees transformed weights not needed any more
        return self

    def prepare(self) -> "MMAudioNetwork":
        """Packs the weights for the GEMMs (see layers.py); forwards also do it lazily when needed."""
        with torch.no_grad():
            for lins in self._modulation_layers():
                ensure_packed(*[lin.weight for lin in lins])
                ensure_packed_bias(*[lin.bias for lin in lins])
            for m in self.modules():
                if isinstance(m, GatedFeedForward):
                    m.pack()
                elif isinstance(m, ChannelLastConv1d):
                    ensure_packed(m.weight)
                elif isinstance(m, nn.Linear) and m.weight.shape[0] * m.weight.shape[1] >= 4096 \
                        and m.weight.stride(0) != 1:  # not already packed with its neighbours
                    ensure_packed(m.weight)
        return self
