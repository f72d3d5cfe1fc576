"""DTW and median filter kernels against openai-whisper's own timing code (numba DTW, torch
median) and scipy, on fresh random data of awkward sizes."""
import numpy as np
import pytest
import torch

from sonicore.ops import dtw, median_filter
from sonicore.ops.align import dtw_reference, median_filter_reference

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _whisper_dtw(x):
    from whisper.timing import dtw_cpu
    return np.stack(dtw_cpu(np.asarray(x, dtype=np.float64)))


@pytest.mark.parametrize("n, m", [(1, 1), (1, 7), (7, 1), (5, 97), (23, 131), (61, 60), (97, 1500)])
def test_dtw_matches_openai_whisper(rng, n, m):
    # Costs spread widely so that float32 (openai) and float64 (ours) accumulations never tie.
    x = rng.standard_normal((n, m)) * 10
    want = _whisper_dtw(x)
    got = dtw(x)
    assert got.dtype == np.int64 and got.shape[0] == 2
    np.testing.assert_array_equal(got, want)
    got32 = dtw(torch.from_numpy(x.astype(np.float32)))
    assert isinstance(got32, torch.Tensor)
    if n * m <= 10000:
        np.testing.assert_array_equal(dtw_reference(x), want)


def test_dtw_path_properties_and_batch(rng):
    x = rng.standard_normal((4, 13, 29)).astype(np.float32)
    paths = dtw(x)
    assert len(paths) == 4
    for k, p in enumerate(paths):
        np.testing.assert_array_equal(p, _whisper_dtw(x[k].astype(np.float64)))
        steps = np.diff(p, axis=1)
        assert ((steps == 0) | (steps == 1)).all() and (steps.sum(0) >= 1).all()
        assert tuple(p[:, 0]) == (0, 0) and tuple(p[:, -1]) == (12, 28)


def test_dtw_follows_a_planted_diagonal(rng):
    n, m = 31, 211
    x = rng.uniform(0, 1, (n, m))
    bounds = np.sort(rng.choice(np.arange(1, m), n - 1, replace=False))
    owner = np.searchsorted(bounds, np.arange(m), side="right")
    x[owner, np.arange(m)] = -5.0
    p = dtw(x)  # the cheapest path runs exactly through the planted cells
    np.testing.assert_array_equal(p[0], owner)


def _path_cost(x, path):
    return float(x[path[0], path[1]].sum())


@pytest.mark.parametrize("n, m", [(1, 9), (6, 40), (17, 73)])
def test_dtw_open_end_and_open_begin_match_subproblems(rng, n, m):
    """open_end = the best closed path over every text prefix; open_begin = the best closed
    path over every start frame; each subproblem solved by openai-whisper's DTW."""
    x = rng.standard_normal((n, m)) * 10
    best = min(range(1, n + 1), key=lambda r: _path_cost(x, _whisper_dtw(x[:r])))
    np.testing.assert_array_equal(dtw(x, open_end=True), _whisper_dtw(x[:best]))
    starts = {c: _whisper_dtw(x[:, c:]) for c in range(m)}
    c = min(starts, key=lambda c: _path_cost(x[:, c:], starts[c]))
    want = starts[c] + np.array([[0], [c]])
    np.testing.assert_array_equal(dtw(x, open_begin=True), want)
    np.testing.assert_array_equal(dtw_reference(x, open_end=True), dtw(x, open_end=True))
    np.testing.assert_array_equal(dtw_reference(x, open_begin=True), want)


def test_dtw_bad_input():
    with pytest.raises(ValueError, match="tokens, frames"):
        dtw(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="at least one"):
        dtw(np.zeros((0, 5), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        dtw(np.zeros((3, 5), np.int32))
    with pytest.raises(ValueError, match="NaN"):
        dtw(np.array([[1.0, np.nan]]))
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        dtw([[1.0, 2.0]])


@pytest.mark.parametrize("shape, width", [((1,), 7), ((3,), 7), ((4,), 7), ((97,), 7), ((6, 13, 1499), 7),
                                          ((5, 1500), 1), ((2, 61), 3), ((7, 101), 31)])
def test_median_filter_matches_scipy_and_whisper(rng, shape, width):
    from scipy.ndimage import median_filter as scipy_median
    x = rng.standard_normal(shape).astype(np.float32)
    got = median_filter(x, width)
    assert got.dtype == np.float32 and got.shape == x.shape
    if shape[-1] > width // 2:
        size = (1,) * (x.ndim - 1) + (width,)
        np.testing.assert_array_equal(got, scipy_median(x, size=size, mode="mirror"))
    else:
        np.testing.assert_array_equal(got, x)
    if x.ndim >= 2 and width == 7:
        from whisper.timing import median_filter as whisper_median
        np.testing.assert_array_equal(median_filter(torch.from_numpy(x), width).numpy(),
                                      whisper_median(torch.from_numpy(x), width).numpy())
    np.testing.assert_array_equal(median_filter(x.astype(np.float64), width), median_filter_reference(
        torch.from_numpy(x.astype(np.float64)), width).numpy())


def test_median_filter_bad_input():
    with pytest.raises(ValueError, match="odd"):
        median_filter(np.zeros(9, np.float32), 6)
    with pytest.raises(ValueError, match="NaN"):
        median_filter(np.array([1.0, np.nan, 2.0], np.float32), 3)
    with pytest.raises(TypeError, match="float32 or float64"):
        median_filter(np.zeros(9, np.int64), 3)


@requires_cuda
@pytest.mark.parametrize("n, m", [(1, 1), (7, 97), (61, 1500), (200, 1500)])
def test_dtw_cuda_matches_cpu(rng, n, m):
    x = rng.standard_normal((3, n, m)).astype(np.float32) * 10
    got = dtw(torch.from_numpy(x).cuda(), backend="cuda")
    for k in range(3):
        np.testing.assert_array_equal(got[k].cpu().numpy(), _whisper_dtw(x[k].astype(np.float64)))
    for flags in (dict(open_end=True), dict(open_begin=True), dict(open_end=True, open_begin=True)):
        got = dtw(torch.from_numpy(x).cuda(), backend="cuda", **flags)
        want = dtw(x.astype(np.float64), **flags)
        for k in range(3):
            np.testing.assert_array_equal(got[k].cpu().numpy(), want[k])


@requires_cuda
@pytest.mark.parametrize("shape, width", [((5, 97), 7), ((6, 13, 1500), 7), ((3, 40), 31)])
def test_median_filter_cuda_matches_torch(rng, shape, width):
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    got = median_filter(x.cuda(), width, backend="cuda").cpu()
    torch.testing.assert_close(got, median_filter_reference(x, width), rtol=0, atol=0)
