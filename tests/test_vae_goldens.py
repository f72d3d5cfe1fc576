"""MMAudio mel VAE: parity with the original's encoder/decoder outputs (../shared/goldens) and errors."""
import os

import pytest
import torch

from sonicore.models.mmaudio.vae import check_compatible, load_vae, normalized_weight

from _goldens import GOLDENS, require_goldens

pytestmark = require_goldens()
TOL = 5e-5  # README: VAE atol 5e-5


def _g(name):
    from safetensors.torch import load_file
    return load_file(os.path.join(GOLDENS, name + ".safetensors"))


def test_decoder_parity():
    g = _g("vae_decoder_tiny")
    vae = load_vae(os.path.join(GOLDENS, "vae_decoder_tiny.safetensors"))
    assert vae.encoder is None and vae.data_dim == 80 and vae.embed_dim == 20
    with torch.no_grad():
        assert (vae.decoder(g["inputs.z"]) - g["outputs.decoder_out"]).abs().max() <= TOL
    assert (vae.decode(g["inputs.z"]) - g["outputs.mel"]).abs().max() <= TOL


def test_weight_normalisation_matches_removed_weight_norm():
    g = _g("vae_decoder_tiny")
    for k, v in g.items():
        if k.startswith("weights_wn_removed.") and k.endswith(".weight") and "conv_out" not in k:
            raw = g["weights." + k[len("weights_wn_removed."):]]
            assert torch.allclose(normalized_weight(raw), v, atol=1e-6), k


def test_encoder_parity():
    g = _g("vae_encoder_tiny")
    vae = load_vae(os.path.join(GOLDENS, "vae_encoder_tiny.safetensors"))
    assert (vae.encode_moments(g["inputs.mel"]) - g["outputs.moments"]).abs().max() <= TOL
    mean, std = vae.encode(g["inputs.mel"])
    assert (mean - g["outputs.mean"]).abs().max() <= TOL
    assert (std - g["outputs.std"]).abs().max() <= TOL


def test_official_key_layout_pth(tmp_path):
    """An official-style .pth (no prefix, raw weights, both halves) loads; decode == golden."""
    dec, enc = _g("vae_decoder_tiny"), _g("vae_encoder_tiny")
    sd = {k[len("weights."):]: v for g in (dec, enc) for k, v in g.items() if k.startswith("weights.")}
    path = tmp_path / "v1-16.pth"
    torch.save(sd, path)
    vae = load_vae(path)
    assert vae.encoder is not None and vae.decoder is not None
    assert (vae.decode(dec["inputs.z"]) - dec["outputs.mel"]).abs().max() <= TOL
    mean, _ = vae.encode(enc["inputs.mel"])
    assert (mean - enc["outputs.mean"]).abs().max() <= TOL


def test_vae_errors(tmp_path):
    vae = load_vae(os.path.join(GOLDENS, "vae_decoder_tiny.safetensors"))
    with pytest.raises(ValueError, match=r"z must be a \(B, 20, frames\)"):
        vae.decode(torch.zeros(1, 40, 9))
    with pytest.raises(ValueError, match="NaN"):
        vae.decode(torch.full((1, 20, 9), float("nan")))
    with pytest.raises(ValueError, match="without its encoder"):
        vae.encode(torch.zeros(1, 80, 8))
    with pytest.raises(ValueError, match="not an MMAudio VAE"):
        load_vae({"foo": torch.zeros(1)})
    g = _g("vae_decoder_tiny")
    sd = {k: v for k, v in g.items() if k.startswith("weights.") and "mid.attn_1.qkv" not in k}
    with pytest.raises(ValueError, match="truncated"):
        load_vae(sd)

    class Net44:
        class cfg:
            latent_dim, sample_rate = 40, 44100
    with pytest.raises(ValueError, match="44100 Hz but the VAE"):
        check_compatible(Net44, vae)
