"""sonicore.sampling.sample: convergence on analytic problems, MMAudio's Euler+CFG arithmetic,
guidance options, schedules, caching, callbacks, conversions and bad input."""
import numpy as np
import pytest
import torch

from sonicore.sampling import (Guidance, SamplingInterrupted, StepCache, conversions, progress_callback,
                               sample, shift_time, time_grid)

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


# ---- analytic ground truth: Gaussian data N(mu, diag(s^2)), noise N(0, I) at t=0 ------------
class Gaussian:
    """x_t = (1-t) x0 + t x1 has variance (1-t)^2 + t^2 s^2 per dimension; the optimal
    velocity E[x1 - x0 | x_t] and the ODE flow map are affine in x (closed form)."""

    def __init__(self, rng, dims, s_range=(0.5, 1.5)):
        self.mu = torch.from_numpy(rng.standard_normal(dims))
        self.s = torch.from_numpy(rng.uniform(*s_range, size=dims))

    def var(self, t):
        return (1 - t) ** 2 + t * t * self.s ** 2

    def velocity(self, x, t):
        t = t.double().view((-1,) + (1,) * (x.dim() - 1))
        xd = x.double()
        v = self.mu + (t * self.s ** 2 - (1 - t)) / self.var(t) * (xd - t * self.mu)
        return v.to(x.dtype)

    def data(self, x, t):   # E[x1 | x_t]
        t = t.double().view((-1,) + (1,) * (x.dim() - 1))
        return self.mu + t * self.s ** 2 / self.var(t) * (x.double() - t * self.mu)

    def noise(self, x, t):  # E[x0 | x_t]
        t = t.double().view((-1,) + (1,) * (x.dim() - 1))
        return (1 - t) / self.var(t) * (x.double() - t * self.mu)

    def flow(self, x, t0, t1):
        """Exact ODE solution at t1 from x at t0."""
        sd = lambda t: torch.sqrt(self.var(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
        return t1 * self.mu + sd(t1) / sd(t0) * (x.double() - t0 * self.mu)


def slope(steps, errs):
    return -np.polyfit(np.log(steps), np.log(errs), 1)[0]


ORDERS = {"euler": 1, "heun": 2, "midpoint": 2, "multistep": 2}


@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint", "multistep"])
@pytest.mark.parametrize("schedule", ["uniform", "shifted"])
def test_gaussian_convergence_order(solver, schedule, rng):
    g = Gaussian(rng, (13, 3))
    x0 = torch.from_numpy(rng.standard_normal((4, 13, 3)).astype(np.float32))
    exact = g.flow(x0, 0.0, 1.0)
    # 16..128 steps: inside the asymptotic range (slopes over 60 random problems: euler 0.98,
    # heun 1.93-2.12, multistep 1.93-2.09) and far above float32 round-off
    steps = [16, 32, 64, 128]
    errs = [(sample(g.velocity, x0, steps=n, solver=solver, schedule=schedule, shift=2.0).double() - exact)
            .abs().max().item() for n in steps]
    p = slope(steps, errs)
    if solver == "midpoint":
        # On Gaussian data the midpoint rule's leading error term cancels (measured slope ~2.9);
        # it must be at least second order here, and is checked at exactly 2 below.
        assert p > 1.8, (errs, p)
    else:
        assert abs(p - ORDERS[solver]) < 0.2, (errs, p)
    # and the error itself is small relative to the solution (max over 80 random problems at 128
    # steps: euler 1.2e-2, heun 5e-5, multistep 1.1e-4, midpoint 1e-6)
    assert errs[-1] < (0.03 if solver == "euler" else 1e-3) * exact.abs().max().item()


@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint", "multistep"])
def test_riccati_convergence_order(solver, rng):
    """dx/dt = -x^2, x(t) = x0 / (1 + x0 t): a problem where every solver shows its plain order."""
    x0 = torch.from_numpy(rng.uniform(0.5, 2.0, (3, 11)).astype(np.float32))
    exact = x0.double() / (1 + x0.double())
    steps = [16, 32, 64, 128] if solver == "euler" else [8, 16, 32, 64]
    errs = [(sample(lambda x, t: -x * x, x0, steps=n, solver=solver).double() - exact).abs().max().item()
            for n in steps]
    assert abs(slope(steps, errs) - ORDERS[solver]) < 0.25, errs


def test_gaussian_cfg_pair_matches_guided_field(rng):
    """Two Gaussians as cond/uncond: guidance must integrate w*v_c + (1-w)*v_u (checked against
    Heun on the same grid written out in float64)."""
    gc, gu = Gaussian(rng, (7,)), Gaussian(rng, (7,))
    w = 2.5

    def fn(x, t, which):
        return torch.where(which.view(-1, 1) == 0, gc.velocity(x, t), gu.velocity(x, t))

    x0 = torch.from_numpy(rng.standard_normal((3, 7)).astype(np.float32))
    cfg = Guidance(w, uncond={"which": torch.ones(3, dtype=torch.int64)})
    n = 32
    got = sample(fn, x0, steps=n, solver="heun", cfg=cfg, conditions={"which": torch.zeros(3, dtype=torch.int64)})
    f = lambda y, tt: w * gc.velocity(y, tt) + (1 - w) * gu.velocity(y, tt)  # noqa: E731
    x = x0.double()
    for k in range(n):
        t0 = torch.full((3,), k / n, dtype=torch.float64)
        t1 = torch.full((3,), (k + 1) / n, dtype=torch.float64)
        a = f(x, t0)
        b = f(x + a / n, t1)
        x = x + (a + b) / (2 * n)
    torch.testing.assert_close(got.double(), x, rtol=1e-4, atol=1e-4)


# ---- MMAudio's Euler + CFG, as ../shared/goldens/README.md describes it ------------------------
class TinyNet(torch.nn.Module):
    """A stand-in network with per-row conditions (the real one lives in the network issue)."""

    def __init__(self, c, d):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.a = torch.nn.Parameter(torch.randn(c, 32, generator=g) / c ** 0.5)
        self.b = torch.nn.Parameter(torch.randn(32, c, generator=g) / 32 ** 0.5)
        self.cp = torch.nn.Parameter(torch.randn(d, 32, generator=g) / d ** 0.5)

    def forward(self, x, t, text):
        h = torch.tanh(x @ self.a + (text @ self.cp)[:, None, :] + t[:, None, None])
        return h @ self.b


def mmaudio_reference(net, x0, text, empty, steps, s):
    """Transcription of the README's prose: float32 linspace grid, per-step CFG with two
    separate calls, x_{k+1} = x_k + (t_{k+1} - t_k) * v."""
    grid = torch.linspace(0, 1, steps + 1)
    x = x0
    for k in range(steps):
        t = grid[k] * torch.ones(len(x), dtype=x.dtype)
        v = s * net(x, t, text) + (1 - s) * net(x, t, empty.expand_as(text))
        x = x + (grid[k + 1] - grid[k]) * v
    return x


@pytest.mark.parametrize("batched", [False, True])
def test_euler_cfg_reproduces_mmaudio_arithmetic(batched, rng):
    net = TinyNet(20, 9).eval()
    x0 = torch.from_numpy(rng.standard_normal((2, 25, 20)).astype(np.float32))
    text = torch.from_numpy(rng.standard_normal((2, 9)).astype(np.float32))
    empty = torch.from_numpy(rng.standard_normal((1, 9)).astype(np.float32))
    with torch.no_grad():
        want = mmaudio_reference(net, x0, text, empty, 4, 4.5)
        traj = []
        # unbatched: hand the network the same (B, D) empty features the transcription uses,
        # since BLAS may round a (1, D) and a (B, D) product differently
        uncond = {"text": empty if batched else empty.expand_as(text)}
        got = sample(net, x0, steps=4, cfg=Guidance(4.5, uncond=uncond, batched=batched),
                     conditions={"text": text}, callback=lambda i, n, t, x: traj.append(x.clone()))
    if batched:  # one call on the doubled batch: the matmul may block rows differently
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(got, want)
    assert len(traj) == 4 and torch.equal(traj[-1], got)


def test_time_grid_is_mmaudio_linspace():
    assert np.array_equal(time_grid(25), torch.linspace(0, 1, 26).numpy())
    assert time_grid(25).dtype == np.float32


# ---- guidance options ------------------------------------------------------------------------
def recording_fn(log):
    def fn(x, t, c):
        log.append((x.shape[0], float(t[0]), c.clone()))
        return x * 0 + c.view(-1, 1) * (1 + t.view(-1, 1))
    return fn


def test_batched_and_separate_guidance_agree(rng):
    x0 = torch.from_numpy(rng.standard_normal((3, 17)).astype(np.float32))
    c, u = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0])
    outs = []
    for batched in (True, False):
        log = []
        outs.append(sample(recording_fn(log), x0, steps=5, conditions={"c": c},
                           cfg=Guidance(3.0, uncond={"c": u}, batched=batched)))
        assert len(log) == (5 if batched else 10)
        assert all(n == (6 if batched else 3) for n, _, _ in log)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    # v = 3*c*(1+t) + (1-3)*u*(1+t); integral of (1+t) over [0,1] in 5 Euler steps = 1 + 0.4
    want = x0 + ((3 * c - 2 * u.expand(3)) * 1.4).view(-1, 1)
    torch.testing.assert_close(outs[0], want, rtol=1e-5, atol=1e-5)


def test_per_sample_guidance_and_interval(rng):
    x0 = torch.from_numpy(rng.standard_normal((2, 5)).astype(np.float32))
    c, u = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    w = torch.tensor([0.0, 4.0])
    log = []
    got = sample(recording_fn(log), x0, steps=4, conditions={"c": c},
                 cfg=Guidance(w, uncond={"c": u}, interval=(0.2, 0.6)))
    # grid 0, .25, .5, .75: guidance only at .25 and .5 (batch 4), the others run cond only (batch 2)
    assert [n for n, _, _ in log] == [2, 4, 4, 2]
    dts = [0.25] * 4
    ts = [0.0, 0.25, 0.5, 0.75]
    want = x0.double().clone()
    for t, dt in zip(ts, dts):
        v = c * (1 + t)
        if 0.2 <= t <= 0.6:
            v = w * c * (1 + t) + (1 - w) * u * (1 + t)
        want += dt * v.view(-1, 1).double()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_shared_conditions_stay_in_both_branches():
    """MMAudioSep keeps its mixture latent in the unconditional branch: keys not in uncond are shared."""
    seen = []

    def fn(x, t, text, mix):
        seen.append((text.clone(), mix.clone()))
        return torch.zeros_like(x)

    mix = torch.arange(6.0).view(2, 3)
    sample(fn, torch.zeros(2, 3), steps=1, conditions={"text": torch.ones(2, 4), "mix": mix},
           cfg=Guidance(2.0, uncond={"text": torch.zeros(1, 4)}))
    text, m = seen[0]
    assert torch.equal(text, torch.cat([torch.ones(2, 4), torch.zeros(2, 4)]))
    assert torch.equal(m, torch.cat([mix, mix]))


# ---- schedules -------------------------------------------------------------------------------
def test_schedules():
    g = time_grid(8, "shifted", shift=3.0)
    lin = np.linspace(0, 1, 9)
    np.testing.assert_allclose(g, 1 - 3 * (1 - lin) / (1 + 2 * (1 - lin)), rtol=1e-6, atol=1e-7)
    assert g[0] == 0 and g[-1] == 1 and np.all(np.diff(g) > 0)
    assert shift_time(0.5, 1.0) == 0.5
    np.testing.assert_array_equal(time_grid(None, [0.0, 0.1, 0.7, 1.0]), np.float32([0, 0.1, 0.7, 1]))
    np.testing.assert_allclose(time_grid(4, t_start=0.2, t_end=0.6), [0.2, 0.3, 0.4, 0.5, 0.6], rtol=1e-6)


def test_user_time_list_is_followed(rng):
    log = []
    times = [0.0, 0.05, 0.3, 0.9, 1.0]
    x0 = torch.zeros(1, 2)
    sample(recording_fn(log), x0, schedule=times, conditions={"c": torch.ones(1)})
    assert [t for _, t, _ in log] == pytest.approx(times[:-1])


# ---- other solvers / features ------------------------------------------------------------------
def test_pingpong_formula_and_point_mass(rng):
    """Ping-pong: x <- x + (1-t) v (data estimate), then x <- t' x + (1-t') noise."""
    mu = torch.from_numpy(rng.standard_normal((2, 9)).astype(np.float32))
    g = Gaussian(rng, (9,), s_range=(1e-3, 1e-3))
    x0 = torch.from_numpy(rng.standard_normal((2, 9)).astype(np.float32))
    # a point mass (s -> 0) is reproduced exactly by the denoising jump
    got = sample(lambda x, t: g.velocity(x, t), x0, steps=6, solver="pingpong",
                 generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got.double(), g.mu.expand(2, 9), rtol=1e-3, atol=1e-3)
    # and the sequence of operations, with the same generator
    fn = lambda x, t: mu - x  # noqa: E731
    gen = torch.Generator().manual_seed(11)
    got = sample(fn, x0, steps=3, solver="pingpong", generator=gen)
    gen = torch.Generator().manual_seed(11)
    x = x0.clone()
    grid = torch.linspace(0, 1, 4)
    for k in range(3):
        t = float(grid[k])
        x = x + (1 - t) * fn(x, None)
        if k < 2:
            n = torch.randn(x.shape, generator=gen)
            x = float(grid[k + 1]) * x + (1 - float(grid[k + 1])) * n
    torch.testing.assert_close(got, x, rtol=1e-6, atol=1e-6)


def test_callback_progress_and_interrupt(rng):
    x0 = torch.from_numpy(rng.standard_normal((1, 4)).astype(np.float32))
    calls = []

    def cb(i, n, t, x):
        calls.append((i, n, t))
        return i < 3

    with pytest.raises(SamplingInterrupted) as exc:
        sample(lambda x, t: torch.ones_like(x), x0, steps=10, callback=cb)
    assert exc.value.step == 3 and [c[0] for c in calls] == [1, 2, 3]
    torch.testing.assert_close(exc.value.x, x0 + 0.3, rtol=1e-6, atol=1e-6)
    out = sample(lambda x, t: torch.ones_like(x), x0, steps=5, callback=progress_callback(disable=True))
    torch.testing.assert_close(out, x0 + 1, rtol=1e-6, atol=1e-6)

    class Stop:
        def is_set(self):
            return True
    with pytest.raises(SamplingInterrupted):
        sample(lambda x, t: torch.ones_like(x), x0, steps=5, callback=progress_callback(disable=True, stop=Stop()))


def test_step_cache(rng):
    g = Gaussian(rng, (31,))
    x0 = torch.from_numpy(rng.standard_normal((2, 31)).astype(np.float32))
    exact = g.flow(x0, 0.0, 1.0)
    calls = []

    def fn(x, t):
        calls.append(1)
        return g.velocity(x, t)

    base = sample(fn, x0, steps=50)
    n_base = len(calls)
    off = StepCache(0.0)
    calls.clear()
    same = sample(fn, x0, steps=50, cache=off)
    assert torch.equal(same, base) and off.evaluations == 50 and off.reused == 0 == (50 - len(calls))
    on = StepCache(0.05)
    calls.clear()
    cached = sample(fn, x0, steps=50, cache=on)
    assert on.evaluations == len(calls) < n_base and on.reused == 50 - on.evaluations
    err_base = (base.double() - exact).abs().max().item()
    err_cached = (cached.double() - exact).abs().max().item()
    assert err_cached < 10 * err_base + 0.05


def test_numpy_in_numpy_out_and_x0_untouched(rng):
    x0 = rng.standard_normal((2, 3)).astype(np.float32)
    keep = x0.copy()
    out = sample(lambda x, t: torch.ones_like(x), x0, steps=4)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, keep + 1, rtol=1e-6)
    np.testing.assert_array_equal(x0, keep)


@pytest.mark.parametrize("vdtype", [torch.float16, torch.bfloat16])
def test_half_precision_network_output(vdtype, rng):
    x0 = torch.from_numpy(rng.standard_normal((2, 40)).astype(np.float32))
    got = sample(lambda x, t: (-x).to(vdtype), x0, steps=10)
    # Same float32 time grid as the sampler: a dt that differs by one ulp can flip a float16
    # rounding of the velocity, which is a 1e-4 change, not an error of the kernel.
    ts = torch.linspace(0.0, 1.0, 11, dtype=torch.float32)
    want = x0.clone()
    for i in range(10):
        want = want + (ts[i + 1] - ts[i]) * (-want).to(vdtype).float()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def _loop_backends():
    import os
    names = ["torch"]
    if os.environ.get("TRITON_INTERPRET") == "1" and _triton_installed():
        names.append("triton")
    return names


def _triton_installed():
    import importlib.util
    return importlib.util.find_spec("triton") is not None


@pytest.mark.parametrize("peer", _loop_backends())
@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint", "multistep", "pingpong"])
def test_backends_agree_inside_the_loop(solver, peer, rng):
    x0 = torch.from_numpy(rng.standard_normal((2, 7, 5)).astype(np.float32))
    c = {"c": torch.tensor([1.0, -2.0])}
    fn = lambda x, t, c: torch.sin(x) * c.view(-1, 1, 1) + t.view(-1, 1, 1)  # noqa: E731
    cfg = Guidance(torch.tensor([1.5, 3.0]), uncond={"c": torch.tensor([0.3])})
    a = sample(fn, x0, steps=5, solver=solver, cfg=cfg, conditions=c, backend="cpu",
               generator=torch.Generator().manual_seed(1))
    b = sample(fn, x0, steps=5, solver=solver, cfg=cfg, conditions=c, backend=peer,
               generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ---- conversions -----------------------------------------------------------------------------
def test_conversions_recover_the_analytic_velocity(rng):
    g = Gaussian(rng, (6,))
    x = torch.from_numpy(rng.standard_normal((3, 6)))
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    v = g.velocity(x, t)
    # noise at one: s = 1 - t, u = dx/ds = -v
    u_fn = lambda y, s: -g.velocity(y, 1 - s)  # noqa: E731
    torch.testing.assert_close(conversions.noise_at_one(u_fn)(x, t), v)
    torch.testing.assert_close(conversions.velocity_from_data(x, t, g.data(x, t)), v)
    torch.testing.assert_close(conversions.velocity_from_noise(x, t, g.noise(x, t)), v)
    torch.testing.assert_close(conversions.data_from_velocity(x, t, v), g.data(x, t))

    # EDM: x_sigma = x / t, sigma = (1-t)/t; denoiser returns E[data | x_sigma]
    def denoiser(xs, sigma):
        tt = 1 / (1 + sigma)
        return g.data(xs * tt.view(-1, 1), tt)

    def eps(xs, sigma):
        tt = 1 / (1 + sigma)
        return g.noise(xs * tt.view(-1, 1), tt)
    torch.testing.assert_close(conversions.edm_denoiser(denoiser)(x, t), v)
    torch.testing.assert_close(conversions.edm_epsilon(eps)(x, t), v)
    torch.testing.assert_close(conversions.time_from_edm_sigma(conversions.edm_sigma_from_time(t)), t)

    # VP v-prediction: x_vp = alpha data + sigma noise (alpha^2 + sigma^2 = 1), v = alpha noise - sigma data
    def vpred(xvp, alpha, sigma):
        tt = alpha / (alpha + sigma)
        xl = xvp / (alpha + sigma).view(-1, 1)
        return alpha.view(-1, 1) * g.noise(xl, tt) - sigma.view(-1, 1) * g.data(xl, tt)
    torch.testing.assert_close(conversions.vp_vprediction(vpred)(x, t), v)


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, err, msg", [
    (dict(x0=torch.tensor([[1.0, float("nan")]])), ValueError, "NaN or infinity"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(steps=2.5), TypeError, "steps must be an int"),
    (dict(t_start=-0.1), ValueError, "t_start must be a time in \\[0, 1\\]"),
    (dict(t_end=1.5), ValueError, "t_end must be a time in \\[0, 1\\]"),
    (dict(steps=None, schedule=[0.0, 0.5, 0.4, 1.0]), ValueError, "strictly monotone"),
    (dict(steps=None, schedule=[0.0, 0.5, 1.2]), ValueError, "in \\[0, 1\\]"),
    (dict(steps=3, schedule=[0.0, 0.5, 1.0]), ValueError, "does not match"),
    (dict(cfg=Guidance(4.5)), ValueError, "needs an unconditional branch"),
    (dict(cfg=Guidance(torch.ones(3), uncond={})), ValueError, "per-sample guidance must have shape \\(2,\\)"),
    (dict(solver="rk4"), ValueError, "solver must be one of"),
    (dict(x0=torch.zeros(2, 3, dtype=torch.float64)), TypeError, "x0 must be float32"),
    (dict(solver="heun", cache=StepCache(0.1)), ValueError, "step caching"),
    (dict(cuda_graph=True), ValueError, "CUDA device"),
    (dict(steps=None, schedule=[1.0, 0.0], solver="pingpong"), ValueError, "times must increase"),
])
def test_bad_input(kwargs, err, msg):
    args = dict(x0=torch.zeros(2, 3), steps=4)
    args.update(kwargs)
    x0 = args.pop("x0")
    with pytest.raises(err, match=msg):
        sample(lambda x, t: torch.zeros_like(x), x0, **args)


def test_velocity_fn_shape_change_is_an_error():
    n = [0]

    def fn(x, t):
        n[0] += 1
        return torch.zeros_like(x) if n[0] < 3 else torch.zeros(x.shape[0], 5)
    with pytest.raises(ValueError, match="velocity_fn returned shape \\(2, 5\\), expected \\(2, 3\\)"):
        sample(fn, torch.zeros(2, 3), steps=5)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        sample(lambda x, t: torch.zeros_like(x, dtype=torch.float64), torch.zeros(2, 3), steps=2)
    with pytest.raises(TypeError, match="must return a torch tensor"):
        sample(lambda x, t: None, torch.zeros(2, 3), steps=2)


def test_non_tensor_conditions_that_differ_cannot_be_batched():
    with pytest.raises(ValueError, match="batched=False"):
        sample(lambda x, t, mode: x, torch.zeros(2, 3), steps=2, conditions={"mode": "a"},
               cfg=Guidance(2.0, uncond={"mode": "b"}))


# ---- GPU (skipped without one) -----------------------------------------------------------------
@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("solver", ["euler", "heun", "multistep"])
def test_gpu_loop_matches_cpu(backend, solver):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 345, 40, generator=g)
    c = torch.randn(2, 40, generator=g)
    fn = lambda x, t, c: torch.tanh(x) * c[:, None, :] - t.view(-1, 1, 1) * x  # noqa: E731
    cfg = Guidance(4.5, uncond={"c": torch.zeros(1, 40)})
    want = sample(fn, x0, steps=10, solver=solver, cfg=cfg, conditions={"c": c})
    cfg_gpu = Guidance(4.5, uncond={"c": torch.zeros(1, 40, device="cuda")})
    got = sample(fn, x0.cuda(), steps=10, solver=solver, cfg=cfg_gpu, conditions={"c": c.cuda()}, backend=backend)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)


@requires_cuda
def test_cuda_graph_capture_and_replay():
    from sonicore.sampling.graphs import clear_graphs
    clear_graphs()
    net = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.SiLU(), torch.nn.Linear(64, 40)).cuda()

    def fn(x, t, c):
        return net(x + c[:, None, :]) * (1 + t.view(-1, 1, 1))

    cfg = Guidance(4.5, uncond={"c": torch.zeros(1, 40, device="cuda")})
    for seed in (0, 1):  # the second call replays the captured graph with new inputs
        g = torch.Generator(device="cuda").manual_seed(seed)
        x0 = torch.randn(2, 345, 40, device="cuda", generator=g)
        c = torch.randn(2, 40, device="cuda", generator=g)
        with torch.no_grad():
            eager = sample(fn, x0, steps=25, cfg=cfg, conditions={"c": c})
            graphed = sample(fn, x0, steps=25, cfg=cfg, conditions={"c": c}, cuda_graph=True)
        torch.testing.assert_close(graphed, eager, rtol=1e-5, atol=1e-5)
    clear_graphs()


def test_backward_integration_inverts(rng):
    """t_start > t_end runs the ODE backwards (data -> noise), e.g. for inversion."""
    g = Gaussian(rng, (5,))
    x1 = torch.from_numpy(rng.standard_normal((2, 5)).astype(np.float32))
    got = sample(g.velocity, x1, steps=64, solver="heun", t_start=1.0, t_end=0.0)
    torch.testing.assert_close(got.double(), g.flow(x1, 1.0, 0.0), rtol=1e-3, atol=1e-3)


def test_cuda_call_plumbing_on_cpu(monkeypatch, rng):
    """The CUDA paths (ops.flow_step's and the sampler's) pass their arguments in the order the
    binding expects. Without a GPU, check it by routing flow_step_cuda to the CPU kernel, whose
    raw entry point takes the same arguments minus the stream."""
    import contextlib
    import types

    from sonicore._ext import C
    from sonicore.sampling import sampler as sampler_mod
    fs = sampler_mod._fs
    streams = []

    def fake_cuda(*args):
        streams.append(args[-1])
        return C.flow_step_cpu_ptr(*args[:-1])

    fake_c = types.SimpleNamespace(flow_step_cuda=fake_cuda, flow_step_cpu_ptr=C.flow_step_cpu_ptr)
    monkeypatch.setattr(fs, "C", fake_c)
    monkeypatch.setattr(sampler_mod, "C", fake_c)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: types.SimpleNamespace(cuda_stream=1234))
    reasons = {"cpu": "forced off", "cuda": None, "triton": "forced off", "torch": None}
    monkeypatch.setattr(sampler_mod._backend, "device_reasons", lambda *a, **k: dict(reasons))
    monkeypatch.setattr(fs, "_REASONS", {})  # nothing computed under the patch outlives the test

    # the op
    x = torch.from_numpy(rng.standard_normal((3, 23)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((6, 23)).astype(np.float32))
    prev = torch.from_numpy(rng.standard_normal((3, 23)).astype(np.float32))
    w = torch.tensor([1.0, 2.0, 4.5])
    store, dup = torch.empty(3, 23), torch.empty(3, 23)
    a = fs._prepare(x.clone(), v, 0.05, w, None, prev, -0.5, None, store, None, dup)
    fs._run_cuda(a)
    want = fs.flow_step_reference(x.clone(), v, 0.05, guidance=w, prev=prev, prev_weight=-0.5)
    torch.testing.assert_close(a.result, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dup, want, rtol=1e-6, atol=1e-6)
    assert streams == [1234]

    # the sampler's raw-address loop
    x0 = torch.from_numpy(rng.standard_normal((2, 9, 4)).astype(np.float32))
    fn = lambda x, t, c: torch.tanh(x) * c.view(-1, 1, 1) - t.view(-1, 1, 1)  # noqa: E731
    cond = {"c": torch.tensor([1.0, -0.5])}
    cfg = Guidance(torch.tensor([2.0, 4.5]), uncond={"c": torch.tensor([0.2])})
    for solver in ("euler", "heun", "midpoint", "multistep"):
        got = sample(fn, x0, steps=6, solver=solver, cfg=cfg, conditions=cond, backend="cuda")
        ref = sample(fn, x0, steps=6, solver=solver, cfg=cfg, conditions=cond, backend="torch")
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
