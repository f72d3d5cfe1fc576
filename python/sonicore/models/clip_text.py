"""CLIP text features in-process: MMAudio's text condition from open_clip weights on a local disk.

MMAudio conditions on the CLIP text tower of DFN5B ViT-H-14-384 (open_clip config
"ViT-H-14-378-quickgelu"): ALL 77 token states after the final layer norm, each L2-normalised,
(B, 77, 1024) — not the pooled, projected embedding CLIP uses for retrieval.

    from sonicore.models.clip_text import load_clip_text
    enc = load_clip_text("DFN5B-CLIP-ViT-H-14-384/open_clip_pytorch_model.bin")  # or the folder
    feats = enc.encode(["a dog barks", "rain on a tin roof"])                      # (2, 77, 1024)

The text transformer is our own (independent code, attention through sonicore.ops.attention,
causal); it reads open_clip's checkpoint key layout (CLIP's top-level text keys or CustomTextCLIP's
`text.*`) and open_clip's model configs. open_clip (PyPI `open_clip_torch`) supplies the model
configs and the BPE tokenizer, and is only needed when this module is used. Nothing is ever
downloaded: weights come from a local path.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from typing import Any, Dict, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import attention as _attention

DEFAULT_MODEL = "ViT-H-14-378-quickgelu"   # open_clip's name for DFN5B ViT-H-14-384, as MMAudio loads it
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                "pytorch_model.bin")
# open_clip text-config options this implementation does not cover (truthy values are rejected).
_UNSUPPORTED = ("hf_model_name", "hf_tokenizer_name", "embed_cls", "use_pad_mask", "block_type", "qk_norm",
                "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc",
                "act_kwargs", "tokenizer_kwargs")


class ClipTextError(ValueError):
    """A CLIP text checkpoint or config that cannot be used, with what was expected."""


@dataclasses.dataclass(frozen=True)
class ClipTextConfig:
    """The text tower of an open_clip model: width, heads, layers, context length (tokens),
    vocabulary size, MLP ratio, QuickGELU (else exact GELU), layer-scale presence, causal mask,
    LayerNorm eps."""
    width: int
    heads: int
    layers: int
    context_length: int = 77
    vocab_size: int = 49408
    mlp_ratio: float = 4.0
    quick_gelu: bool = False
    layer_scale: bool = False
    causal: bool = True
    eps: float = 1e-5


def _open_clip_dir() -> str:
    """open_clip's package folder, found WITHOUT importing it (its __init__ imports torchvision,
    which the text tower does not need)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("CLIP text features need open_clip for its model configs and tokenizer: "
                          "pip install open_clip_torch")
    return list(spec.submodule_search_locations)[0]


def config_from_open_clip(model: Union[str, Dict[str, Any], os.PathLike]) -> ClipTextConfig:
    """ClipTextConfig from an open_clip model name ("ViT-H-14-378-quickgelu"), an open_clip model
    config dict ({"text_cfg": {...}, "quick_gelu": ...}), or a JSON file holding one (a hub folder's
    open_clip_config.json, whose "model_cfg" entry is used)."""
    if isinstance(model, dict):
        cfg = model
    else:
        name = os.fspath(model)
        if name.endswith(".json") or os.path.isfile(name):
            if not os.path.isfile(name):
                raise FileNotFoundError(f"no open_clip config file at {name!r}")
            with open(name) as fh:
                cfg = json.load(fh)
        else:
            path = os.path.join(_open_clip_dir(), "model_configs", name + ".json")
            if not os.path.isfile(path):
                known = sorted(f[:-5] for f in os.listdir(os.path.dirname(path)) if f.endswith(".json"))
                near = [k for k in known if k.lower().startswith(name.lower()[:6])][:8]
                raise ClipTextError(f"open_clip has no model config named {name!r}; names like it: {near} "
                                    f"(MMAudio uses {DEFAULT_MODEL!r})")
            with open(path) as fh:
                cfg = json.load(fh)
    cfg = cfg.get("model_cfg", cfg)
    text = cfg.get("text_cfg")
    if not isinstance(text, dict):
        raise ClipTextError("an open_clip model config needs a 'text_cfg' entry (width, heads, layers, ...)")
    bad = [k for k in _UNSUPPORTED if text.get(k)]
    if bad:
        raise ClipTextError(f"this open_clip text tower uses {bad}, which sonicore's CLIP text encoder does not "
                            "implement (it covers the plain CLIP text transformer, as in ViT-H-14)")
    if text.get("pool_type", "argmax") not in ("argmax", "eos", "first", "last", "none") or \
            text.get("final_ln_after_pool"):
        raise ClipTextError(f"unsupported text pooling settings in {text}")
    try:
        return ClipTextConfig(width=int(text["width"]), heads=int(text["heads"]), layers=int(text["layers"]),
                              context_length=int(text.get("context_length", 77)),
                              vocab_size=int(text.get("vocab_size", 49408)),
                              mlp_ratio=float(text.get("mlp_ratio", 4.0)),
                              quick_gelu=bool(cfg.get("quick_gelu", False)),
                              layer_scale=text.get("ls_init_value") is not None,
                              causal=not text.get("no_causal_mask", False),
                              eps=float((text.get("norm_kwargs") or {}).get("eps", 1e-5)))
    except KeyError as exc:
        raise ClipTextError(f"open_clip text_cfg lacks {exc.args[0]!r}") from None


def _ln(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm computed in float32 whatever the weights' dtype (as open_clip's LayerNormFp32)."""
    return F.layer_norm(x.float(), ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps).to(x.dtype)


class _Block(nn.Module):
    """Pre-LN transformer block with open_clip's parameter names (ln_1, attn.in_proj_*, attn.out_proj,
    ln_2, mlp.c_fc, mlp.c_proj, optional ls_1/ls_2.gamma)."""

    def __init__(self, cfg: ClipTextConfig):
        super().__init__()
        d = cfg.width
        hidden = int(d * cfg.mlp_ratio)
        self.cfg = cfg
        self.ln_1 = nn.LayerNorm(d, eps=cfg.eps)
        self.attn = nn.Module()
        self.attn.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.attn.in_proj_bias = nn.Parameter(torch.empty(3 * d))
        self.attn.out_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d, eps=cfg.eps)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(d, hidden)
        self.mlp.c_proj = nn.Linear(hidden, d)
        if cfg.layer_scale:
            self.ls_1, self.ls_2 = nn.Module(), nn.Module()
            self.ls_1.gamma = nn.Parameter(torch.ones(d))
            self.ls_2.gamma = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        H = self.cfg.heads
        qkv = F.linear(_ln(self.ln_1, x), self.attn.in_proj_weight, self.attn.in_proj_bias)
        # in_proj rows are [q; k; v] blocks, each split into heads: (B, L, 3, H, hd).
        q, k, v = qkv.view(B, L, 3, H, D // H).unbind(2)
        o = _attention(q, k, v, causal=self.cfg.causal, layout="bnhd").reshape(B, L, D)
        a = self.attn.out_proj(o)
        x = x + (a * self.ls_1.gamma if self.cfg.layer_scale else a)
        h = self.mlp.c_fc(_ln(self.ln_2, x))
        h = h * torch.sigmoid(1.702 * h) if self.cfg.quick_gelu else F.gelu(h)
        m = self.mlp.c_proj(h)
        return x + (m * self.ls_2.gamma if self.cfg.layer_scale else m)


class ClipTextEncoder(nn.Module):
    """CLIP text transformer returning every token state after the final LayerNorm, L2-normalised.

    forward(tokens (B, context_length) int64) -> (B, context_length, width) float32;
    encode(texts: str or list of str) tokenizes with open_clip's BPE tokenizer first.
    """

    def __init__(self, cfg: ClipTextConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self._tokenizer = None

    @property
    def dtype(self) -> torch.dtype:
        return self.positional_embedding.dtype

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"tokens must be an integer tensor (B, {cfg.context_length}), got "
                            f"{getattr(tokens, 'dtype', type(tokens).__name__)} {tuple(getattr(tokens, 'shape', ()))}")
        if tokens.shape[1] != cfg.context_length:
            raise ValueError(f"tokens must have {cfg.context_length} positions, got {tokens.shape[1]}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
        x = self.token_embedding(tokens.to(self.positional_embedding.device)) + self.positional_embedding
        for block in self.transformer.resblocks:
            x = block(x)
        x = _ln(self.ln_final, x)
        return F.normalize(x.float(), dim=-1)

    def tokenize(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """open_clip's BPE tokenization: (B, context_length) int64, start/end tokens, zero padded,
        truncated to the context length."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"text must be a string or a non-empty list of strings, got {texts!r}")
        if self._tokenizer is None:
            self._tokenizer = _simple_tokenizer(self.cfg.context_length)
        return self._tokenizer(list(texts))

    @torch.no_grad()
    def encode(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """texts (one string or B strings) -> (B, context_length, width) float32 features."""
        return self(self.tokenize(texts))


def _simple_tokenizer(context_length: int):
    """open_clip's SimpleTokenizer. Its module depends only on ftfy/regex/torch, so it is loaded from
    open_clip's folder without running the package __init__ (which needs a working torchvision)."""
    path = os.path.join(_open_clip_dir(), "tokenizer.py")
    spec = importlib.util.spec_from_file_location("sonicore_open_clip_tokenizer", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ImportError as exc:
        raise ImportError(f"open_clip's tokenizer needs {exc.name}: pip install open_clip_torch") from exc
    return mod.SimpleTokenizer(context_length=context_length)


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Text-tower tensors of an open_clip checkpoint (.safetensors, or .bin/.pt/.pth read with
    weights_only=True and mmap, so the vision tower is never copied into memory)."""
    def wanted(k: str) -> bool:
        k = k[len("module."):] if k.startswith("module.") else k
        k = k[len("text."):] if k.startswith("text.") else k
        return k.startswith(("token_embedding.", "positional_embedding", "transformer.", "ln_final."))

    if path.endswith(".safetensors"):
        from safetensors import safe_open
        try:
            with safe_open(path, framework="pt") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys() if wanted(k)}
        except Exception as exc:
            raise ClipTextError(f"{path!r} is not a readable safetensors file ({exc})") from exc
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            sd = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:
        raise ClipTextError(f"{path!r} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ClipTextError(f"{path!r} does not hold a state dict")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor) and wanted(k)}


def _keys(path: str):
    """Tensor names of a checkpoint (for error messages only)."""
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(path, framework="pt") as fh:
                return list(fh.keys())
        sd = torch.load(path, map_location="meta", weights_only=True)
        return list(sd) if isinstance(sd, dict) else []
    except Exception:
        return []


def _find_weights(weights: Union[str, os.PathLike]) -> str:
    path = os.fspath(weights)
    if os.path.isdir(path):
        for name in WEIGHT_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise FileNotFoundError(f"{path!r} holds none of {list(WEIGHT_FILES)} (open_clip weights)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no CLIP weights at {path!r}: point to a local open_clip checkpoint "
                                "(e.g. DFN5B-CLIP-ViT-H-14-384/open_clip_pytorch_model.bin); nothing is downloaded")
    return path


def load_clip_text(weights: Union[str, os.PathLike], model: Union[str, Dict[str, Any], os.PathLike, None] = None,
                   *, device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32) -> ClipTextEncoder:
    """Loads the text tower of an open_clip CLIP model from a local checkpoint.

    weights: an open_clip checkpoint file (.safetensors, .bin, .pt, .pth) or a folder holding one
      (a Hugging Face hub snapshot such as apple/DFN5B-CLIP-ViT-H-14-384).
    model: the open_clip config — a model name (default "ViT-H-14-378-quickgelu", DFN5B ViT-H-14-384,
      or the folder's open_clip_config.json when weights is a folder that has one), a config dict or a
      JSON path.
    Returns a ClipTextEncoder in eval mode; encode(texts) -> (B, 77, 1024) for ViT-H-14.
    Raises FileNotFoundError for a missing path, ClipTextError (a ValueError) for a checkpoint that
    does not match the config or is not an open_clip CLIP checkpoint.
    """
    path = _find_weights(weights)
    if model is None:
        folder_cfg = os.path.join(os.fspath(weights), "open_clip_config.json")
        model = folder_cfg if os.path.isdir(os.fspath(weights)) and os.path.isfile(folder_cfg) else DEFAULT_MODEL
    cfg = config_from_open_clip(model)
    sd = _read_state_dict(path)
    prefix = "module." if any(k.startswith("module.") for k in sd) else ""
    sd = {k[len(prefix):]: v for k, v in sd.items()}
    if any(k.startswith("text.") for k in sd):
        sd = {k[len("text."):]: v for k, v in sd.items() if k.startswith("text.")}
    if "token_embedding.weight" not in sd:
        hf = any(k.startswith(("text_model.", "vision_model.")) for k in _keys(path))
        raise ClipTextError(f"{path!r} is not an open_clip CLIP checkpoint: it has no text tower "
                            "(token_embedding.weight missing)" + (
                                "; it looks like a Hugging Face transformers CLIPModel file — use the folder's "
                                "open_clip_pytorch_model.bin / open_clip_model.safetensors" if hf else ""))
    with torch.device("meta"):
        enc = ClipTextEncoder(cfg)
    want = enc.state_dict()
    missing = sorted(set(want) - set(sd))
    if missing:
        raise ClipTextError(f"{path!r} lacks {len(missing)} text-tower tensors for this config (first: "
                            f"{missing[:3]}); is the model config ({model!r}) the one these weights belong to?")
    extra = sorted(k for k in sd if k not in want)
    if extra:
        raise ClipTextError(f"{path!r} has text-tower tensors this config does not expect ({extra[:3]}...); "
                            f"check the model config ({model!r})")
    for k, p in want.items():
        if tuple(sd[k].shape) != tuple(p.shape):
            raise ClipTextError(f"{k}: the checkpoint holds shape {tuple(sd[k].shape)}, the config "
                                f"({model!r}) expects {tuple(p.shape)}: wrong model config for these weights")
        if sd[k].is_floating_point() and not bool(torch.isfinite(sd[k]).all()):
            raise ClipTextError(f"{k} contains NaN or infinite values")
    enc = enc.to_empty(device=device).to(dtype)
    enc.load_state_dict({k: v.to(dtype) for k, v in sd.items()})
    return enc.eval()


_CACHE: Dict[tuple, ClipTextEncoder] = {}


def cached_clip_text(weights, model=None) -> ClipTextEncoder:
    """load_clip_text, loaded once per (weights, model) per process (the text tower of ViT-H-14 is
    ~350M parameters: reloading it per call would dominate)."""
    key = (os.path.abspath(os.fspath(weights)), json.dumps(model, sort_keys=True) if isinstance(model, dict) else model)
    if key not in _CACHE:
        _CACHE[key] = load_clip_text(weights, model)
    return _CACHE[key]


__all__ = ["ClipTextConfig", "ClipTextEncoder", "ClipTextError", "DEFAULT_MODEL", "cached_clip_text",
           "config_from_open_clip", "load_clip_text"]
