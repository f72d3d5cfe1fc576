"""In-process CLIP text features (issue #6) against open_clip's own text tower.

A tiny random-weight open_clip text config is built with open_clip's TextTransformer, saved in the
checkpoint layouts open_clip uses, loaded through sonicore.models.clip_text, and the features are
compared with the independent derivation through open_clip's modules: every token state after
ln_final, L2-normalised (what MMAudio feeds its network)."""
import importlib
import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sonicore.models import mmaudio
from sonicore.models.clip_text import ClipTextError, load_clip_text
from sonicore.models.mmaudio import MMAudioConfig

WORDS = ["dog", "barks", "rain", "on", "a", "tin", "roof", "thunder", "rolls", "door", "creaks", "slowly",
         "glass", "shatters", "!", "Footsteps", "gravel", "crowd", "cheers", "engine", "idles", "42"]


@pytest.fixture(scope="module")
def open_clip_modules():
    """open_clip's transformer and tokenizer modules. open_clip's package __init__ imports torchvision;
    where torchvision cannot load (e.g. a CUDA torchvision beside a CPU torch, as on the CI box) the
    two modules, which never use it, are imported without that __init__."""
    pytest.importorskip("ftfy", reason="open_clip_torch is not installed (pip install open_clip_torch)")
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.skip("open_clip_torch is not installed (pip install open_clip_torch)")
    try:
        import open_clip.tokenizer as tok
        import open_clip.transformer as tr
        yield tr, tok
        return
    except (ImportError, RuntimeError):
        pass
    before = set(sys.modules)
    saved = {k: sys.modules.get(k) for k in ("open_clip", "torchvision", "torchvision.ops", "torchvision.ops.misc")}
    pkg = types.ModuleType("open_clip")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules["open_clip"] = pkg
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})  # only named by utils.py
    sys.modules.update({"torchvision": types.ModuleType("torchvision"),
                        "torchvision.ops": types.ModuleType("torchvision.ops"), "torchvision.ops.misc": misc})
    try:
        tr = importlib.import_module("open_clip.transformer")
        tok = importlib.import_module("open_clip.tokenizer")
        yield tr, tok
    finally:
        for k in set(sys.modules) - before:
            if k.startswith("open_clip."):  # leave what torch itself imported meanwhile
                del sys.modules[k]
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _tiny_cfg(quick_gelu, ls):
    text = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2}
    if ls:
        text["ls_init_value"] = 0.5
    return {"embed_dim": 32, "quick_gelu": quick_gelu, "vision_cfg": {"width": 8, "layers": 1, "patch_size": 2},
            "text_cfg": text}


def _reference_tower(tr, cfg, gen):
    t = cfg["text_cfg"]
    act = tr.QuickGELU if cfg["quick_gelu"] else torch.nn.GELU
    ref = tr.TextTransformer(context_length=t["context_length"], vocab_size=t["vocab_size"], width=t["width"],
                             heads=t["heads"], layers=t["layers"], ls_init_value=t.get("ls_init_value"),
                             output_dim=cfg["embed_dim"], act_layer=act, output_tokens=True).eval()
    with torch.no_grad():  # every parameter random, so no path hides behind an init of ones/zeros
        for name, p in ref.named_parameters():
            if p.dim() == 1 and ("ln" in name or "gamma" in name):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(p.shape[-1]))
    return ref


def _texts(rng):
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 9)))) for _ in range(int(rng.integers(2, 5)))]
    return texts + ["", " ".join(rng.choice(WORDS, size=90))]  # empty, and one cut at 77 tokens


@pytest.mark.parametrize("quick_gelu,ls,layout", [(True, False, "bin"), (False, True, "safetensors-text"),
                                                   (True, False, "folder")])
def test_features_match_open_clip(open_clip_modules, rng, tmp_path, quick_gelu, ls, layout):
    tr, tok = open_clip_modules
    cfg = _tiny_cfg(quick_gelu, ls)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    ref = _reference_tower(tr, cfg, gen)
    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    vision = {"visual.conv1.weight": torch.randn(8, 3, 2, 2, generator=gen), "logit_scale": torch.tensor(2.6)}
    if layout == "bin":  # CLIP: text keys at the top level, beside the vision tower
        path = tmp_path / "open_clip_pytorch_model.bin"
        torch.save({**sd, **vision}, path)
        enc = load_clip_text(path, cfg)
    elif layout == "safetensors-text":  # CustomTextCLIP: text tower under text.*
        from safetensors.torch import save_file
        path = tmp_path / "clip.safetensors"
        save_file({**{"text." + k: v for k, v in sd.items()}, **vision}, str(path))
        cfg_path = tmp_path / "tiny.json"
        cfg_path.write_text(json.dumps(cfg))
        enc = load_clip_text(path, cfg_path)
    else:  # a hub snapshot folder: weights + open_clip_config.json ({"model_cfg": ...})
        torch.save({**sd, **vision}, tmp_path / "open_clip_pytorch_model.bin")
        (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
        enc = load_clip_text(tmp_path)
    texts = _texts(rng)
    ids = tok.SimpleTokenizer(context_length=77)(texts)
    assert torch.equal(enc.tokenize(texts), ids)
    with torch.no_grad():
        _, tokens = ref(ids)
        want = F.normalize(tokens.double(), dim=-1)
        ref64 = ref.double()
        exact = F.normalize(ref64(ids)[1], dim=-1)
    got = enc.encode(texts)
    assert got.shape == (len(texts), 77, 64) and got.dtype == torch.float32
    ref_err = (want - exact).abs().max().item()
    err = (got.double() - exact).abs().max().item()
    assert err <= max(2 * ref_err, 1e-5), (err, ref_err)
    assert torch.allclose(got.norm(dim=-1), torch.ones(()), atol=1e-5)


@pytest.fixture()
def tiny_checkpoint(open_clip_modules, tmp_path, rng):
    tr, _ = open_clip_modules
    cfg = _tiny_cfg(True, False)
    ref = _reference_tower(tr, cfg, torch.Generator().manual_seed(int(rng.integers(1 << 31))))
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(ref.state_dict(), path)
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps(cfg))
    return path, cfg_path, cfg


def test_bad_input_is_reported(tiny_checkpoint, tmp_path):
    path, cfg_path, cfg = tiny_checkpoint
    with pytest.raises(FileNotFoundError, match="no CLIP weights"):
        load_clip_text(tmp_path / "missing.bin", cfg)
    with pytest.raises(FileNotFoundError, match="holds none of"):
        load_clip_text(_empty_dir(tmp_path), cfg)
    wide = json.loads(json.dumps(cfg))
    wide["text_cfg"]["width"] = 128
    with pytest.raises(ClipTextError, match="wrong model config"):
        load_clip_text(path, wide)
    deep = json.loads(json.dumps(cfg))
    deep["text_cfg"]["layers"] = 3
    with pytest.raises(ClipTextError, match="lacks"):
        load_clip_text(path, deep)
    with pytest.raises(ClipTextError, match="no model config named"):
        load_clip_text(path, "ViT-Q-99-not-a-model")
    with pytest.raises(ClipTextError, match="hf_model_name"):
        load_clip_text(path, {"text_cfg": {"hf_model_name": "xlm-roberta-large", "width": 64, "heads": 4,
                                           "layers": 2}})
    other = tmp_path / "other.bin"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(ClipTextError, match="not an open_clip CLIP checkpoint"):
        load_clip_text(other, cfg)
    hf = tmp_path / "model.safetensors"
    from safetensors.torch import save_file
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(4, 4)}, str(hf))
    with pytest.raises(ClipTextError, match="Hugging Face transformers"):
        load_clip_text(hf, cfg)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ClipTextError, match="not a readable"):
        load_clip_text(junk, cfg)
    enc = load_clip_text(path, cfg_path)
    with pytest.raises(TypeError, match="string"):
        enc.encode([3])
    with pytest.raises(ValueError, match="77 positions"):
        enc(torch.zeros(1, 5, dtype=torch.long))


def _empty_dir(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_generate_from_text_prompts(tiny_checkpoint, rng, monkeypatch):
    from test_mmaudio_batches import _random_net
    path, cfg_path, _ = tiny_checkpoint
    cfg = MMAudioConfig(latent_dim=8, clip_dim=16, sync_dim=16, text_dim=64, hidden_dim=32, depth=2, fused_depth=1,
                        num_heads=2, text_seq_len=77)
    net = _random_net(cfg, torch.Generator().manual_seed(int(rng.integers(1 << 31))))
    x0 = torch.randn(2, net.cfg.seq_lengths(1.0)["latent"], 8, generator=torch.Generator().manual_seed(1))
    prompts = ["a dog barks", "rain on a tin roof"]
    enc = load_clip_text(path, cfg_path)
    want = mmaudio.generate(net, text_f=enc.encode(prompts), duration=1.0, x0=x0, steps=2)
    got = mmaudio.generate(net, text=prompts, clip_text=enc, duration=1.0, x0=x0, steps=2)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    monkeypatch.delenv("SONICORE_CLIP_WEIGHTS", raising=False)
    with pytest.raises(ValueError, match="SONICORE_CLIP_WEIGHTS"):
        mmaudio.generate(net, text="a dog barks", duration=1.0, steps=1)
    monkeypatch.setenv("SONICORE_CLIP_WEIGHTS", str(path))
    monkeypatch.setenv("SONICORE_CLIP_MODEL", str(cfg_path))
    got = mmaudio.generate(net, text=prompts, duration=1.0, x0=x0, steps=2)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not both"):
        mmaudio.generate(net, text="a", text_f=enc.encode("a"), duration=1.0, steps=1)
    small = MMAudioConfig(latent_dim=8, clip_dim=16, sync_dim=16, text_dim=40, hidden_dim=32, depth=2,
                          fused_depth=1, num_heads=2, text_seq_len=77)
    net2 = _random_net(small, torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="expects 77 x 40"):
        mmaudio.generate(net2, text="a dog", clip_text=enc, duration=1.0, steps=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_features_on_gpu(tiny_checkpoint, rng):
    path, cfg_path, _ = tiny_checkpoint
    cpu = load_clip_text(path, cfg_path)
    gpu = load_clip_text(path, cfg_path, device="cuda")
    texts = _texts(rng)
    torch.testing.assert_close(gpu.encode(texts).cpu(), cpu.encode(texts), rtol=1e-3, atol=1e-3)
