"""Batches of different durations (issue #6): one padded network call must give, row by row, what each
clip gives alone at its own lengths — through predict_flow, the sampler and the public generate API.

The reference for row b is the same network run on row b alone, unpadded, at the sequence lengths
its duration gives (the path the goldens pin); random weights everywhere so no path hides."""
import pytest
import torch

from sonicore.models import mmaudio
from sonicore.models.mmaudio import MMAudioConfig
from sonicore.models.mmaudio.sampler import sample_latent
from test_mmaudio_network import random_state_dict

TINY = dict(latent_dim=20, clip_dim=24, sync_dim=40, text_dim=36, hidden_dim=32, depth=3, fused_depth=1,
            num_heads=2, text_seq_len=5)


def _random_net(cfg, gen):
    return mmaudio.load(random_state_dict(cfg, gen))


def _pad(rows, n):
    """list of (n_b, C) -> (B, n, C) with NaN in the padding (it must never be read)."""
    out = torch.full((len(rows), n, rows[0].shape[-1]), float("nan"))
    for b, r in enumerate(rows):
        out[b, :r.shape[0]] = r
    return out


def _case(cfg, gen, durations):
    L = [cfg.seq_lengths(d) for d in durations]
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    feats = dict(clip=[r(l["clip"], cfg.clip_dim) for l in L], sync=[r(l["sync"], cfg.sync_dim) for l in L],
                 x=[r(l["latent"], cfg.latent_dim) for l in L], mix=[r(l["latent"], cfg.latent_dim) for l in L])
    text = r(len(durations), cfg.text_seq_len, cfg.text_dim)
    lens = {k: torch.tensor([l[k] for l in L]) for k in ("latent", "clip", "sync")}
    return L, feats, text, lens


def _setup(rng, durations, **cfg_kw):
    """A random tiny network and fresh per-row inputs for clips of these durations."""
    cfg = MMAudioConfig(**TINY, **cfg_kw)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    return (cfg, gen, _random_net(cfg, gen)) + _case(cfg, gen, durations)


def _close(got, want, tol=2e-5):
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    assert err <= tol * max(scale, 1.0), (err, scale)


@pytest.mark.parametrize("v2,sep,durations", [(False, False, [3.1, 8.0, 5.55]), (True, False, [2.0, 0.7]),
                                               (False, True, [5.55, 1.3, 3.1])])
def test_padded_batch_equals_each_row_alone(rng, v2, sep, durations):
    cfg, gen, net, L, f, text, lens = _setup(rng, durations, v2=v2, separation=sep)
    N = max(l["latent"] for l in L)
    t = torch.rand(len(durations), generator=gen)
    with torch.no_grad():
        cond = net.preprocess_conditions(_pad(f["clip"], int(lens["clip"].max())), _pad(f["sync"], int(lens["sync"].max())),
                                         text, N, latent_lens=lens["latent"], clip_lens=lens["clip"],
                                         sync_lens=lens["sync"])
        v = net.predict_flow(_pad(f["x"], N), t, cond, _pad(f["mix"], N) if sep else None)
        assert torch.isfinite(v).all()
        for b, l in enumerate(L):
            n = l["latent"]
            alone = net.preprocess_conditions(f["clip"][b][None], f["sync"][b][None], text[b:b + 1], n)
            want = net.predict_flow(f["x"][b][None], t[b:b + 1], alone, f["mix"][b][None] if sep else None)
            _close(v[b:b + 1, :n], want)
            assert (v[b, n:] == 0).all()  # nothing is predicted on the padding


def test_padded_batch_through_the_sampler(rng):
    durations = [3.1, 1.3, 2.2]
    cfg, gen, net, L, f, text, lens = _setup(rng, durations)
    N, Nc, Ns = (int(lens[k].max()) for k in ("latent", "clip", "sync"))
    kw = dict(latent_lens=lens["latent"], clip_lens=lens["clip"], sync_lens=lens["sync"])
    with torch.no_grad():
        cond = net.preprocess_conditions(_pad(f["clip"], Nc), _pad(f["sync"], Ns), text, N, **kw)
        empty = net.empty_conditions(Nc, Ns, N, **kw)
        x = sample_latent(net, _pad(f["x"], N).nan_to_num(0.0), cond, empty, steps=3, cfg_strength=4.5)
        for b, l in enumerate(L):
            n = l["latent"]
            alone = net.preprocess_conditions(f["clip"][b][None], f["sync"][b][None], text[b:b + 1], n)
            want = sample_latent(net, f["x"][b][None], alone, net.empty_conditions(l["clip"], l["sync"], n),
                                 steps=3, cfg_strength=4.5)
            _close(x[b:b + 1, :n], want, 5e-5)


def test_generate_with_durations(rng):
    durations = [2.2, 3.1, 1.05]
    cfg, gen, net, L, f, text, lens = _setup(rng, durations)
    x0 = _pad(f["x"], int(lens["latent"].max())).nan_to_num(0.0)
    got = mmaudio.generate(net, clip_f=f["clip"], sync_f=f["sync"], text_f=text, durations=durations,
                           x0=x0, steps=2)
    assert isinstance(got, list) and len(got) == 3
    for b, (d, l) in enumerate(zip(durations, L)):
        want = mmaudio.generate(net, clip_f=f["clip"][b], sync_f=f["sync"][b], text_f=text[b:b + 1], duration=d,
                                x0=f["x"][b][None], steps=2)
        assert got[b].shape == (1, l["latent"], cfg.latent_dim)
        _close(got[b], want, 5e-5)
    # missing conditions (learned empty features) follow each row's duration too
    got = mmaudio.generate(net, durations=durations, x0=x0, steps=2)
    for b, d in enumerate(durations):
        n = L[b]["latent"]
        _close(got[b], mmaudio.generate(net, duration=d, x0=x0[b:b + 1, :n], steps=2), 5e-5)


def test_generate_separation_with_durations(rng):
    """MMAudioSep: the mixture latent comes per row (a list) and is padded like the rest."""
    durations = [1.05, 2.2]
    cfg, gen, net, L, f, text, lens = _setup(rng, durations, separation=True)
    x0 = _pad(f["x"], int(lens["latent"].max())).nan_to_num(0.0)
    got = mmaudio.generate(net, sync_f=f["sync"], text_f=text, x_mix=f["mix"], durations=durations, x0=x0, steps=2)
    for b, d in enumerate(durations):
        want = mmaudio.generate(net, sync_f=f["sync"][b], text_f=text[b:b + 1], x_mix=f["mix"][b][None], duration=d,
                                x0=f["x"][b][None], steps=2)
        _close(got[b], want, 5e-5)
    with pytest.raises(ValueError, match="row 1 of x_mix"):
        mmaudio.generate(net, x_mix=[f["mix"][0], f["mix"][1][:10]], durations=durations, steps=1)


def test_duration_errors_say_what_is_expected(rng):
    cfg = MMAudioConfig(**TINY)
    net = _random_net(cfg, torch.Generator().manual_seed(int(rng.integers(1 << 31))))
    with pytest.raises(ValueError, match="clip features"):
        mmaudio.generate(net, clip_f=[torch.zeros(24, 24), torch.zeros(10, 24)], durations=[3.1, 8.0], steps=1)
    with pytest.raises(ValueError, match="durations"):
        mmaudio.generate(net, durations=[3.1, -1.0], steps=1)
    with pytest.raises(ValueError, match="one of duration or durations"):
        mmaudio.generate(net, duration=3.0, durations=[3.1, 8.0], steps=1)
    with pytest.raises(ValueError, match="2 rows"):
        mmaudio.generate(net, clip_f=[torch.zeros(24, 24)], durations=[3.1, 8.0], steps=1)
    with pytest.raises(ValueError, match="latent_lens"):
        net.preprocess_conditions(torch.zeros(2, 8, 24), torch.zeros(2, 16, 40), torch.zeros(2, 5, 36), 30,
                                  latent_lens=[30, 31])
    with pytest.raises(ValueError, match="sync_lens"):
        net.preprocess_conditions(torch.zeros(2, 8, 24), torch.zeros(2, 16, 40), torch.zeros(2, 5, 36), 30,
                                  latent_lens=[30, 20], sync_lens=[16, 12])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_padded_batch_on_gpu(rng):
    """The same equality on the GPU path (Triton adaLN/SwiGLU/qk-norm kernels, GPU attention)."""
    durations = [3.1, 8.0, 5.55]
    cfg, gen, net, L, f, text, lens = _setup(rng, durations)
    net = net.cuda()
    N, Nc, Ns = (int(lens[k].max()) for k in ("latent", "clip", "sync"))
    t = torch.rand(3, generator=gen).cuda()
    with torch.no_grad():
        cond = net.preprocess_conditions(_pad(f["clip"], Nc).cuda(), _pad(f["sync"], Ns).cuda(), text.cuda(), N,
                                         latent_lens=lens["latent"], clip_lens=lens["clip"], sync_lens=lens["sync"])
        v = net.predict_flow(_pad(f["x"], N).cuda(), t, cond).cpu()
        for b, l in enumerate(L):
            n = l["latent"]
            alone = net.preprocess_conditions(f["clip"][b][None].cuda(), f["sync"][b][None].cuda(),
                                              text[b:b + 1].cuda(), n)
            want = net.predict_flow(f["x"][b][None].cuda(), t[b:b + 1], alone).cpu()
            _close(v[b:b + 1, :n], want, 1e-4)
