"""Whisper checkpoint readers, each mapped to sonicore's one internal state dict.

Formats users have:
- CTranslate2 model directories (model.bin + config.json + tokenizer.json), read by io.ct2;
- openai-whisper ``.pt`` checkpoints ({"dims", "model_state_dict"}), read with
  ``torch.load(weights_only=True)`` so that no pickle code from the file runs;
- Hugging Face transformers Whisper directories (config.json + *.safetensors).

Internal names (fused projections as CTranslate2 stores them, so the CT2 path is copy-free):
``encoder.conv{1,2}.{weight,bias}``, ``encoder.pos``, ``encoder.norm.*``,
``encoder.layers.{i}.{attn_norm,attn.qkv,attn.out,mlp_norm,mlp.fc1,mlp.fc2}.*``,
``decoder.embed.weight``, ``decoder.pos``, ``decoder.norm.*``, and per decoder layer also
``cross_norm``, ``cross.q``, ``cross.kv``, ``cross.out``. qkv is [q; k; v] on the output axis.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch

__all__ = ["WhisperCheckpoint", "load_whisper_checkpoint", "from_ct2", "from_openai", "from_hf",
           "read_openai_pt", "read_hf_dir"]

State = Dict[str, torch.Tensor]


class WhisperCheckpoint:
    """Config dict (openai ModelDimensions names), internal state dict, alignment heads
    ((layer, head) list or None when the checkpoint does not say), tokenizer.json path or None."""

    def __init__(self, config: dict, state: State, alignment_heads: Optional[List[Tuple[int, int]]],
                 tokenizer_path: Optional[str], source: str):
        self.config = config
        self.state = state
        self.alignment_heads = alignment_heads
        self.tokenizer_path = tokenizer_path
        self.source = source


def _need(state: dict, key: str, where: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"{where} has no tensor {key!r}; it is not a complete Whisper checkpoint")
    return state[key]


def _n_layers(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in keys for m in [rx.match(k)] if m}
    if not idx:
        return 0
    if idx != set(range(max(idx) + 1)):
        raise ValueError(f"layer numbers are not contiguous: {sorted(idx)}")
    return max(idx) + 1


def _fuse(*ts: torch.Tensor) -> torch.Tensor:
    return torch.cat(ts, dim=0).contiguous()


def _float(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32) if t.is_floating_point() else t


# ---------------------------------------------------------------- CTranslate2
def from_ct2(ct2_model, where: str) -> Tuple[dict, State]:
    """(config, state) from a parsed CT2Model of spec WhisperSpec."""
    if ct2_model.spec_name and ct2_model.spec_name != "WhisperSpec":
        raise ValueError(f"{where} holds a {ct2_model.spec_name}, not a Whisper model (WhisperSpec)")
    from .ct2 import scalar
    g = ct2_model.get

    def has(name):
        return name in ct2_model

    names = list(ct2_model.variables)
    n_enc = _n_layers(names, r"encoder/layer_(\d+)/")
    n_dec = _n_layers(names, r"decoder/layer_(\d+)/")
    if n_enc == 0 or n_dec == 0:
        raise ValueError(f"{where} has no encoder/decoder layers; it is not a Whisper model")
    s: State = {}

    def lin(dst, src):
        s[dst + ".weight"] = _float(_need_ct2(src + "/weight"))
        bias = src + "/bias"
        s[dst + ".bias"] = _float(g(bias)) if has(bias) else torch.zeros(s[dst + ".weight"].shape[0])

    def norm(dst, src):
        s[dst + ".weight"] = _float(_need_ct2(src + "/gamma"))
        s[dst + ".bias"] = _float(_need_ct2(src + "/beta"))

    def _need_ct2(name):
        if name not in ct2_model:
            raise ValueError(f"{where} has no variable {name!r}; the model file is incomplete")
        return g(name)

    lin("encoder.conv1", "encoder/conv1")
    lin("encoder.conv2", "encoder/conv2")
    s["encoder.pos"] = _float(_need_ct2("encoder/position_encodings/encodings"))
    norm("encoder.norm", "encoder/layer_norm")
    for i in range(n_enc):
        p = f"encoder/layer_{i}"
        q = f"encoder.layers.{i}"
        norm(q + ".attn_norm", p + "/self_attention/layer_norm")
        lin(q + ".attn.qkv", p + "/self_attention/linear_0")
        lin(q + ".attn.out", p + "/self_attention/linear_1")
        norm(q + ".mlp_norm", p + "/ffn/layer_norm")
        lin(q + ".mlp.fc1", p + "/ffn/linear_0")
        lin(q + ".mlp.fc2", p + "/ffn/linear_1")
    s["decoder.embed.weight"] = _float(_need_ct2("decoder/embeddings/weight"))
    s["decoder.pos"] = _float(_need_ct2("decoder/position_encodings/encodings"))
    norm("decoder.norm", "decoder/layer_norm")
    for i in range(n_dec):
        p = f"decoder/layer_{i}"
        q = f"decoder.layers.{i}"
        norm(q + ".attn_norm", p + "/self_attention/layer_norm")
        lin(q + ".attn.qkv", p + "/self_attention/linear_0")
        lin(q + ".attn.out", p + "/self_attention/linear_1")
        norm(q + ".cross_norm", p + "/attention/layer_norm")
        lin(q + ".cross.q", p + "/attention/linear_0")
        lin(q + ".cross.kv", p + "/attention/linear_1")
        lin(q + ".cross.out", p + "/attention/linear_2")
        norm(q + ".mlp_norm", p + "/ffn/layer_norm")
        lin(q + ".mlp.fc1", p + "/ffn/linear_0")
        lin(q + ".mlp.fc2", p + "/ffn/linear_1")
    d_audio = s["encoder.conv1.weight"].shape[0]
    d_text = s["decoder.embed.weight"].shape[1]
    config = dict(
        n_mels=s["encoder.conv1.weight"].shape[1], n_audio_ctx=s["encoder.pos"].shape[0],
        n_audio_state=d_audio, n_audio_head=int(scalar(ct2_model, "encoder/num_heads", d_audio // 64)),
        n_audio_layer=n_enc, n_vocab=s["decoder.embed.weight"].shape[0],
        n_text_ctx=s["decoder.pos"].shape[0], n_text_state=d_text,
        n_text_head=int(scalar(ct2_model, "decoder/num_heads", d_text // 64)), n_text_layer=n_dec)
    return config, s


# ---------------------------------------------------------------- name tables (.pt and Hugging Face)
# Both formats keep q, k, v (and cross k, v) as separate modules, so one loop reads either through
# a table: internal name -> (source module, or the modules fused in order, and the bias rule).
# Bias rules: _NEED - "<src>.bias" must be there; _OPT - zeros when absent; _ZERO - always zeros
# (openai-whisper's key projections have no bias). _TENSOR: the source is a bare tensor's full key.
_NEED, _OPT, _ZERO, _TENSOR = "need", "opt", "zero", "tensor"

# Internal layout in reading order, which fixes the state dict's order and which error comes first.
_TOP_ENC = ("encoder.conv1", "encoder.conv2", "encoder.pos", "encoder.norm")
_TOP_DEC = ("decoder.embed.weight", "decoder.pos", "decoder.norm")
_ENC_LAYER = ("attn_norm", "attn.qkv", "attn.out", "mlp_norm", "mlp.fc1", "mlp.fc2")
_DEC_LAYER = ("attn_norm", "attn.qkv", "attn.out", "cross_norm", "cross.q", "cross.kv", "cross.out",
              "mlp_norm", "mlp.fc1", "mlp.fc2")


class _Names(NamedTuple):
    layer: str                  # source prefix of layer {i} of {side} ("encoder" or "decoder")
    n_layers: Tuple[str, str]   # config keys of the encoder and decoder layer counts
    table: Dict[str, tuple]     # internal name (relative to the layer inside layers) -> (source, rule)


_OPENAI_NAMES = _Names("{side}.blocks.{i}", ("n_audio_layer", "n_text_layer"), {
    "encoder.conv1": ("encoder.conv1", _NEED),
    "encoder.conv2": ("encoder.conv2", _NEED),
    "encoder.pos": ("encoder.positional_embedding", _TENSOR),
    "encoder.norm": ("encoder.ln_post", _NEED),
    "decoder.embed.weight": ("decoder.token_embedding.weight", _TENSOR),
    "decoder.pos": ("decoder.positional_embedding", _TENSOR),
    "decoder.norm": ("decoder.ln", _NEED),
    "attn_norm": ("attn_ln", _NEED),
    "attn.qkv": (("attn.query", "attn.key", "attn.value"), (_NEED, _ZERO, _NEED)),
    "attn.out": ("attn.out", _OPT),
    "cross_norm": ("cross_attn_ln", _NEED),
    "cross.q": ("cross_attn.query", _OPT),
    "cross.kv": (("cross_attn.key", "cross_attn.value"), (_ZERO, _NEED)),
    "cross.out": ("cross_attn.out", _OPT),
    "mlp_norm": ("mlp_ln", _NEED),
    "mlp.fc1": ("mlp.0", _OPT),
    "mlp.fc2": ("mlp.2", _OPT),
})

_HF_NAMES = _Names("{side}.layers.{i}", ("encoder_layers", "decoder_layers"), {
    "encoder.conv1": ("encoder.conv1", _OPT),
    "encoder.conv2": ("encoder.conv2", _OPT),
    "encoder.pos": ("encoder.embed_positions.weight", _TENSOR),
    "encoder.norm": ("encoder.layer_norm", _OPT),
    "decoder.embed.weight": ("decoder.embed_tokens.weight", _TENSOR),
    "decoder.pos": ("decoder.embed_positions.weight", _TENSOR),
    "decoder.norm": ("decoder.layer_norm", _OPT),
    "attn_norm": ("self_attn_layer_norm", _OPT),
    "attn.qkv": (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), (_OPT, _OPT, _OPT)),
    "attn.out": ("self_attn.out_proj", _OPT),
    "cross_norm": ("encoder_attn_layer_norm", _OPT),
    "cross.q": ("encoder_attn.q_proj", _OPT),
    "cross.kv": (("encoder_attn.k_proj", "encoder_attn.v_proj"), (_OPT, _NEED)),
    "cross.out": ("encoder_attn.out_proj", _OPT),
    "mlp_norm": ("final_layer_norm", _OPT),
    "mlp.fc1": ("fc1", _OPT),
    "mlp.fc2": ("fc2", _OPT),
})


def _map_names(names: _Names, cfg: dict, sd: dict, where: str) -> State:
    """Internal state from sd through one format's name table (cfg gives the layer counts)."""
    s: State = {}

    def read(dst: str, src, rule) -> None:
        if rule == _TENSOR:
            s[dst] = _float(_need(sd, src, where))
            return
        srcs, rules = ((src,), (rule,)) if isinstance(src, str) else (src, rule)
        ws = [_float(_need(sd, n + ".weight", where)) for n in srcs]
        bs = []
        for n, w, r in zip(srcs, ws, rules):
            if r == _NEED or (r == _OPT and n + ".bias" in sd):
                bs.append(_float(_need(sd, n + ".bias", where)))
            else:
                bs.append(torch.zeros(w.shape[0]))
        s[dst + ".weight"] = ws[0] if len(ws) == 1 else _fuse(*ws)
        s[dst + ".bias"] = bs[0] if len(bs) == 1 else _fuse(*bs)

    for side, top, layer, n_key in (("encoder", _TOP_ENC, _ENC_LAYER, names.n_layers[0]),
                                    ("decoder", _TOP_DEC, _DEC_LAYER, names.n_layers[1])):
        for dst in top:
            read(dst, *names.table[dst])
        for i in range(int(cfg[n_key])):
            p = names.layer.format(side=side, i=i)
            for dst in layer:
                src, rule = names.table[dst]
                src = f"{p}.{src}" if isinstance(src, str) else tuple(f"{p}.{n}" for n in src)
                read(f"{side}.layers.{i}.{dst}", src, rule)
    return s


# ---------------------------------------------------------------- openai-whisper .pt
def read_openai_pt(path: str) -> Tuple[dict, dict]:
    """(dims, model_state_dict) of an openai-whisper checkpoint, loaded with weights_only=True."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal/corruption becomes one clear error
        raise ValueError(f"{path} could not be read as an openai-whisper checkpoint with "
                         f"torch.load(weights_only=True): {exc}") from None
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ValueError(f"{path} is not an openai-whisper checkpoint: expected a dict with 'dims' "
                         "and 'model_state_dict'")
    return dict(ckpt["dims"]), ckpt["model_state_dict"]


def from_openai(dims: dict, sd: dict, where: str = "the checkpoint") -> Tuple[dict, State]:
    """(config, internal state) from openai-whisper names."""
    s = _map_names(_OPENAI_NAMES, dims, sd, where)
    config = {k: int(dims[k]) for k in ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                                        "n_vocab", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")}
    return config, s


# ---------------------------------------------------------------- Hugging Face transformers
def read_hf_dir(path: str) -> Tuple[dict, dict]:
    """(config.json dict, tensors from every *.safetensors file) of a transformers Whisper directory."""
    from safetensors.torch import load_file
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise ValueError(f"{path} has no config.json; a Hugging Face Whisper directory needs config.json "
                         "and model.safetensors")
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
        raise ValueError(f"{path} has no *.safetensors file; a Hugging Face Whisper directory needs "
                         "config.json and model.safetensors")
    with open(cfg_path, "r", encoding="utf-8") as fh:
        try:
            cfg = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from None
    sd = {}
    for f in files:
        try:
            sd.update(load_file(os.path.join(path, f)))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{os.path.join(path, f)} is not a readable safetensors file: {exc}") from None
    return cfg, sd


def from_hf(cfg: dict, sd: dict, where: str = "the checkpoint") -> Tuple[dict, State]:
    """(config, internal state) from transformers WhisperForConditionalGeneration names."""
    sd = {(k[len("model."):] if k.startswith("model.") else k): v for k, v in sd.items()}
    s = _map_names(_HF_NAMES, cfg, sd, where)
    try:
        config = dict(n_mels=int(cfg["num_mel_bins"]), n_audio_ctx=int(cfg["max_source_positions"]),
                      n_audio_state=int(cfg["d_model"]), n_audio_head=int(cfg["encoder_attention_heads"]),
                      n_audio_layer=int(cfg["encoder_layers"]), n_vocab=int(cfg["vocab_size"]),
                      n_text_ctx=int(cfg["max_target_positions"]), n_text_state=int(cfg["d_model"]),
                      n_text_head=int(cfg["decoder_attention_heads"]), n_text_layer=int(cfg["decoder_layers"]))
    except KeyError as exc:
        raise ValueError(f"{where}: config.json lacks {exc.args[0]!r}, needed for a Whisper model") from None
    return config, s


# ---------------------------------------------------------------- one entry point
def _heads_from_json(path: str) -> Optional[List[Tuple[int, int]]]:
    if not os.path.isfile(path):
        return None
    with open(path, "r", encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    heads = data.get("alignment_heads") if isinstance(data, dict) else None
    if heads is None:
        return None
    try:
        return [(int(l), int(h)) for l, h in heads]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: 'alignment_heads' should be a list of [layer, head] pairs") from None


def load_whisper_checkpoint(path: str) -> WhisperCheckpoint:
    """Reads any supported Whisper checkpoint.

    path: a CTranslate2 directory (model.bin, config.json, tokenizer.json), a Hugging Face
    directory (config.json, *.safetensors, tokenizer.json), or an openai-whisper ``.pt`` file.
    Raises FileNotFoundError when the path does not exist and ValueError naming the missing
    or broken file otherwise.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Whisper model not found: {path}")
    if os.path.isfile(path):
        if path.endswith("model.bin"):
            return load_whisper_checkpoint(os.path.dirname(path) or ".")
        dims, sd = read_openai_pt(path)
        config, state = from_openai(dims, sd, where=path)
        tok = os.path.join(os.path.dirname(path), "tokenizer.json")
        return WhisperCheckpoint(config, state, None, tok if os.path.isfile(tok) else None, path)
    tok = os.path.join(path, "tokenizer.json")
    tok = tok if os.path.isfile(tok) else None
    if os.path.isfile(os.path.join(path, "model.bin")):
        from .ct2 import read_model_bin
        m = read_model_bin(os.path.join(path, "model.bin"))
        config, state = from_ct2(m, where=os.path.join(path, "model.bin"))
        heads = _heads_from_json(os.path.join(path, "config.json"))
        return WhisperCheckpoint(config, state, heads, tok, path)
    if any(f.endswith(".safetensors") for f in os.listdir(path)):
        cfg, sd = read_hf_dir(path)
        config, state = from_hf(cfg, sd, where=path)
        heads = _heads_from_json(os.path.join(path, "generation_config.json"))
        return WhisperCheckpoint(config, state, heads, tok, path)
    pts = [f for f in os.listdir(path) if f.endswith(".pt")]
    if len(pts) == 1:
        return load_whisper_checkpoint(os.path.join(path, pts[0]))
    raise ValueError(f"{path} holds no Whisper model: expected model.bin (CTranslate2), *.safetensors + "
                     "config.json (Hugging Face) or one openai-whisper .pt file")
