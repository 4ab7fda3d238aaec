#!/usr/bin/env python3
"""Generate Kiln's PyTorch golden vectors (one .safetensors file per case).

Usage (from the repo root; see regenerate.sh):
    PYTHONPATH=$BUILD/pydeps /usr/bin/python3 tests/golden/make_goldens.py tests/golden/data

Needs torch (Debian's 1.13 is fine), numpy and the `safetensors` package.
Weights and inputs are float32; the expected outputs and running stats are computed by PyTorch in float64
from them and stored rounded to float32 (the exact answer, so the tolerance measures Kiln alone).
One CPU thread, so the output is deterministic.
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

# Kiln's reference modules (python/kiln_nn.py) and its spelling of a module as a C++ declaration (the exporter's,
# python/kiln_export/spelling.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from kiln_export import spelling  # noqa: E402
from kiln_nn import Concat, LayerNorm, LayerNormNoBias, Residual, RMSNorm, Sequential, Sum  # noqa: E402

BATCH_SIZES = (1, 3, 64, 1000)
# 20-digit decimal, > 2**63: both Philox key words are non-zero and a reader
# has to parse it as an unsigned 64-bit integer.
DROPOUT_SEED_BASE = 12345670000000000000
CASE_SEED_BASE = 1000

# --------------------------------------------------------------------------
# Kiln's counter-based dropout mask: Philox4x32-10 (Random123)
# --------------------------------------------------------------------------
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Vectorised Philox4x32-10.  Arguments are uint64 arrays (or ints) holding
    32-bit values; returns four uint64 arrays holding the 32-bit output words."""
    c0, c1, c2, c3 = (np.asarray(v, dtype=np.uint64) for v in (c0, c1, c2, c3))
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    m0, m1, m32 = np.uint64(M0), np.uint64(M1), np.uint64(MASK32)
    s32 = np.uint64(32)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(W0)) & m32
            k1 = (k1 + np.uint64(W1)) & m32
        p0 = m0 * c0  # < 2**64, exact in uint64
        p1 = m1 * c2
        c0, c1, c2, c3 = ((p1 >> s32) ^ c1 ^ k0, p1 & m32,
                          (p0 >> s32) ^ c3 ^ k1, p0 & m32)
    return c0, c1, c2, c3


def philox4x32_10_scalar(c, k):
    """Straight-line reference used only to cross-check the vectorised one."""
    c, k = list(c), list(k)
    for r in range(10):
        if r:
            k = [(k[0] + W0) & MASK32, (k[1] + W1) & MASK32]
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK32, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK32]
    return tuple(c)


def self_test_philox():
    kat = tuple(int(v) for v in philox4x32_10(0, 0, 0, 0, 0, 0))
    assert kat == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8), [hex(v) for v in kat]
    assert philox4x32_10_scalar((0, 0, 0, 0), (0, 0)) == kat
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = [int(v) for v in rng.integers(0, 2**32, 4, dtype=np.uint64)]
        k = [int(v) for v in rng.integers(0, 2**32, 2, dtype=np.uint64)]
        got = tuple(int(v) for v in philox4x32_10(*c, *k))
        assert got == philox4x32_10_scalar(c, k)


def kiln_dropout_keep(numel, p, seed, stream, step):
    """Boolean keep-mask for a Dropout output of `numel` elements (flat row-major)."""
    e = np.arange(numel, dtype=np.uint64)
    block = e >> np.uint64(2)
    word = (e & np.uint64(3)).astype(np.int64)
    nblocks = (numel + 3) // 4
    b = np.arange(nblocks, dtype=np.uint64)
    words = np.stack(philox4x32_10(
        b & np.uint64(MASK32), b >> np.uint64(32),
        np.full(nblocks, stream, dtype=np.uint64), np.full(nblocks, step, dtype=np.uint64),
        seed & MASK32, seed >> 32))  # [4, nblocks]
    w = words[word, block.astype(np.int64)]
    u = (w >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)
    return u >= np.float32(p)


def kiln_dropout(x, p, seed, stream, step):
    """x times the mask (PyTorch multiplies, so a dropped NaN or Inf gives NaN, a dropped -1 gives -0)."""
    xn = x.detach().contiguous().numpy()
    if p == 1:
        return x * 0
    keep = kiln_dropout_keep(xn.size, p, seed, stream, step).reshape(xn.shape)
    scale = np.float32(1) / (np.float32(1) - np.float32(p))
    out = xn * np.where(keep, scale, np.zeros_like(scale)).astype(xn.dtype)
    return torch.from_numpy(out)


class KilnDropout(nn.Module):
    """Train-mode stand-in for nn.Dropout using Kiln's mask (eval: identity)."""

    def __init__(self, p, seed, stream, step=0):
        super().__init__()
        self.p, self.seed, self.stream, self.step = p, seed, stream, step

    def forward(self, x):
        if not self.training:
            return x
        return kiln_dropout(x, self.p, self.seed, self.stream, self.step)


def replace_dropouts(model, seed, step=0, module=None):
    """Swap every nn.Dropout for `module` (KilnDropout by default); stream = depth-first ordinal.
    Children are visited in registration order, which is Kiln's leaf order: a Sequential's items, a Residual's
    body, a Sum's or Concat's branches, each one's subtree before the next."""
    module = module or KilnDropout
    counter = [0]

    def visit(mod):
        for name, child in mod.named_children():
            if isinstance(child, nn.Dropout):
                setattr(mod, name, module(child.p, seed, counter[0], step))
                counter[0] += 1
            else:
                visit(child)

    visit(model)
    return counter[0]


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------
def S(*layers):
    """A network: kiln_nn.Sequential (torch.nn.Sequential whose first layer may take two inputs, a Bilinear)."""
    return Sequential(*layers)


SPECIAL = [0.0, 1e-3, 1.0, 10.0, 30.0, 50.0, 90.0, 200.0]


def gen_randn(shape):
    return torch.randn(shape) * 1.5


def gen_special(shape):
    x = torch.randn(shape) * 1.5
    vals = []
    for v in SPECIAL:
        vals += [v, -v]  # 0.0, -0.0, 1e-3, -1e-3, ...
    x[:, :16] = torch.tensor(vals, dtype=torch.float32)
    return x


def gen_large(shape):
    return torch.randn(shape) * 100


def gen_rand(shape):
    return torch.rand(shape)


KINKS = [-3.0, 3.0, 0.0, -1e-3, 1e-3, -6.0, 6.0, 5.0, 2.5, 10.0, 20.0, -20.0]


def gen_kinks(shape):
    """The special values plus where piecewise activations change formula (Hardswish's -3 and 3, Softplus's
    threshold, 0), so that their gradients at the edges are checked too."""
    x = gen_special(shape)
    x[:, 16:16 + len(KINKS)] = torch.tensor(KINKS, dtype=torch.float32)
    return x


def gen_nonfinite_spread(shape):
    """gen_nonfinite's values, spread along a sample instead of at its start (for rows longer than 64 values,
    whose Softmax max the kernels take in four chains of 16 lanes): sample 0 has NaN at 41, +Inf at 17 and -Inf at
    60, samples 2, 3 and 4 (mod 6) NaN at 50, +Inf at 33 and -Inf at 9, sample 5 NaN at 22 and 63."""
    x = torch.randn(shape) * 1.5
    flat = x.view(shape[0], -1)
    nan, inf = float("nan"), float("inf")
    for r in range(shape[0]):
        specials = {0: [(41, nan), (17, inf), (60, -inf)], 2: [(50, nan)], 3: [(33, inf)], 4: [(9, -inf)],
                    5: [(22, nan), (63, nan)]}
        for col, v in specials.get(r % 6, []):
            flat[r, col % flat.shape[1]] = v
    return x


def gen_nonfinite(shape):
    """randn, with NaN, +Inf and -Inf in some samples: sample 0 has all three (at 0, 1, 2), sample 1 none,
    samples 2, 3 and 4 one each (NaN at 3, +Inf at 5, -Inf at 7), and so on every 6 samples. The values sit at
    the start of a sample, away from the tail of the tensor (PyTorch's kernels treat a tensor's last few
    elements with scalar code, which can differ from its vector code on a NaN)."""
    x = torch.randn(shape) * 1.5
    flat = x.view(shape[0], -1)
    nan, inf = float("nan"), float("inf")
    for r in range(shape[0]):
        specials = {0: [(0, nan), (1, inf), (2, -inf)], 2: [(3, nan)], 3: [(5, inf)], 4: [(7, -inf)]}
        for col, v in specials.get(r % 6, []):
            flat[r, col % flat.shape[1]] = v
    return x


def identical(a, b):
    """Same shape, dtype and bits (a NaN equals itself, -0.0 is not 0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.is_floating_point:
        ints = {torch.float32: torch.int32, torch.float64: torch.int64}[a.dtype]
        return torch.equal(a.contiguous().view(ints), b.contiguous().view(ints))
    return torch.equal(a, b)


def worst_difference(a, b):
    """The largest |a - b| / max(1, |b|); 0 where both are NaN or the same infinity, inf where only one is NaN or
    an infinity (or they are opposite infinities)."""
    a, b = a.double(), b.double()
    d = (a - b).abs() / b.abs().clamp(min=1)
    same = (a == b) | (a.isnan() & b.isnan())
    d = torch.where(same, torch.zeros_like(d), d)
    d = torch.where(~same & ~(a.isfinite() & b.isfinite()), torch.full_like(d, float("inf")), d)
    return d.max().item() if d.numel() else 0.0


# (name, builder, [per-sample shapes], input generator)
CASES = [
    ("linear", lambda: S(nn.Linear(20, 30)), [(20,)], gen_randn),
    ("linear_nobias", lambda: S(nn.Linear(20, 30, bias=False)), [(20,)], gen_randn),
    ("linear_3d", lambda: S(nn.Linear(20, 7)), [(5, 20)], gen_randn),
    ("bilinear", lambda: S(nn.Bilinear(6, 5, 4)), [(6,), (5,)], gen_randn),
    ("bilinear_nobias", lambda: S(nn.Bilinear(6, 5, 4, bias=False)), [(6,), (5,)], gen_randn),
    ("relu", lambda: S(nn.ReLU()), [(3, 17)], gen_randn),
    ("sigmoid", lambda: S(nn.Sigmoid()), [(50,)], gen_special),
    ("tanh", lambda: S(nn.Tanh()), [(50,)], gen_special),
    ("softmax_dim1", lambda: S(nn.Softmax(dim=1)), [(10,)], gen_randn),
    ("softmax_3d_dim1", lambda: S(nn.Softmax(dim=1)), [(4, 6)], gen_randn),
    ("softmax_3d_last", lambda: S(nn.Softmax(dim=-1)), [(4, 6)], gen_randn),
    ("softmax_large", lambda: S(nn.Softmax(dim=-1)), [(10,)], gen_large),
    ("flatten", lambda: S(nn.Flatten()), [(2, 3, 4)], gen_randn),
    ("flatten_mid", lambda: S(nn.Flatten(2, 3)), [(2, 3, 4)], gen_randn),
    ("unflatten", lambda: S(nn.Unflatten(1, (2, 3, 4))), [(24,)], gen_randn),
    ("unflatten_last", lambda: S(nn.Unflatten(-1, (3, 4))), [(2, 12)], gen_randn),
    ("dropout_p0", lambda: S(nn.Dropout(0.0)), [(32,)], gen_randn),
    ("dropout_p1", lambda: S(nn.Dropout(1.0)), [(32,)], gen_randn),
    ("dropout_p05", lambda: S(nn.Dropout(0.5)), [(32,)], gen_randn),
    ("batchnorm", lambda: S(nn.BatchNorm1d(8)), [(8,)], gen_randn),
    ("batchnorm_3d", lambda: S(nn.BatchNorm1d(8)), [(8, 5)], gen_randn),
    ("batchnorm_cumulative", lambda: S(nn.BatchNorm1d(8, momentum=None)), [(8,)], gen_randn),
    ("batchnorm_noaffine", lambda: S(nn.BatchNorm1d(8, affine=False)), [(8,)], gen_randn),
    ("batchnorm_nostats", lambda: S(nn.BatchNorm1d(8, track_running_stats=False)), [(8,)], gen_randn),
    ("batchnorm_custom", lambda: S(nn.BatchNorm1d(8, eps=1e-3, momentum=0.3)), [(8,)], gen_randn),
    ("layernorm", lambda: S(LayerNorm(16)), [(16,)], gen_randn),
    ("layernorm_2d", lambda: S(LayerNorm((3, 8))), [(3, 8)], gen_randn),
    ("layernorm_last", lambda: S(LayerNorm(8)), [(3, 8)], gen_randn),
    ("layernorm_noaffine", lambda: S(LayerNorm(16, elementwise_affine=False)), [(16,)], gen_randn),
    ("layernorm_nobias", lambda: S(LayerNorm(16, bias=False)), [(16,)], gen_randn),
    ("layernorm_eps", lambda: S(LayerNorm(16, eps=1e-3)), [(16,)], gen_randn),
    ("rmsnorm", lambda: S(RMSNorm(16)), [(16,)], gen_randn),
    ("rmsnorm_eps", lambda: S(RMSNorm(16, eps=1e-6)), [(16,)], gen_randn),
    ("rmsnorm_2d", lambda: S(RMSNorm((3, 8))), [(3, 8)], gen_randn),
    ("rmsnorm_noaffine", lambda: S(RMSNorm(16, elementwise_affine=False)), [(16,)], gen_randn),
    ("rmsnorm_tutorial", lambda: S(RMSNorm(16, eps=1e-6, eps_placement="added_to_rms")), [(16,)], gen_randn),
    ("net_seed", lambda: S(nn.Flatten(), nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(),
                           nn.Dropout(0.2), nn.Linear(256, 10)), [(1, 28, 28)], gen_rand),
    ("net_bilinear", lambda: S(nn.Bilinear(64, 48, 32), nn.ReLU(), nn.Linear(32, 8), nn.Softmax(-1)),
     [(64,), (48,)], gen_randn),
    ("net_mlp_norm", lambda: S(nn.Linear(32, 64), LayerNorm(64), nn.Tanh(), nn.Linear(64, 64),
                               RMSNorm(64), nn.Sigmoid(), nn.Linear(64, 10), nn.Softmax(1)),
     [(32,)], gen_randn),
    ("net_3d", lambda: S(nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                         nn.Unflatten(1, (4, 8)), LayerNorm((4, 8)), nn.Softmax(-1), nn.Flatten(),
                         nn.Linear(32, 5)), [(4, 16)], gen_randn),
    ("net_nested", lambda: S(S(nn.Linear(20, 30), nn.ReLU()), S(nn.Linear(30, 30), nn.Dropout(0.5), nn.Tanh()),
                             nn.Linear(30, 3)), [(20,)], gen_randn),
    ("net_mixed", lambda: S(nn.Linear(16, 32, bias=False), RMSNorm(32, eps=1e-6, eps_placement="added_to_rms"), nn.ReLU(),
                            nn.Dropout(0.5), nn.BatchNorm1d(32, momentum=None, affine=False),
                            nn.Linear(32, 4), nn.Softmax(-1)), [(16,)], gen_randn),
    ("net_rank3", lambda: S(nn.Linear(10, 12), nn.BatchNorm1d(3), nn.Sigmoid(), nn.Dropout(0.3),
                            nn.Flatten(), nn.Linear(36, 6)), [(3, 10)], gen_randn),
    # Appended (cases are seeded by position): covers Dropout stream 1.
    ("net_two_dropouts", lambda: S(nn.Linear(24, 24), nn.Dropout(0.5), nn.ReLU(), nn.Dropout(0.25),
                                   nn.Linear(24, 4)), [(24,)], gen_randn),
    ("gelu", lambda: S(nn.GELU()), [(50,)], gen_kinks),
    ("gelu_tanh", lambda: S(nn.GELU(approximate="tanh")), [(50,)], gen_kinks),
    ("silu", lambda: S(nn.SiLU()), [(50,)], gen_kinks),
    ("leaky_relu", lambda: S(nn.LeakyReLU()), [(50,)], gen_kinks),
    ("leaky_relu_slope", lambda: S(nn.LeakyReLU(negative_slope=0.2)), [(3, 17)], gen_randn),
    ("elu", lambda: S(nn.ELU()), [(50,)], gen_kinks),
    ("elu_alpha", lambda: S(nn.ELU(alpha=0.7)), [(3, 17)], gen_randn),
    ("softplus", lambda: S(nn.Softplus()), [(50,)], gen_kinks),
    ("softplus_beta", lambda: S(nn.Softplus(beta=2.0, threshold=5.0)), [(50,)], gen_kinks),
    ("hardswish", lambda: S(nn.Hardswish()), [(50,)], gen_kinks),
    ("identity", lambda: S(nn.Identity()), [(2, 7)], gen_randn),
    ("log_softmax", lambda: S(nn.LogSoftmax(dim=1)), [(10,)], gen_randn),
    ("log_softmax_3d", lambda: S(nn.LogSoftmax(dim=1)), [(4, 6)], gen_randn),
    ("log_softmax_large", lambda: S(nn.LogSoftmax(dim=-1)), [(10,)], gen_large),
    ("net_activations", lambda: S(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 32), nn.SiLU(), nn.LeakyReLU(0.1),
                                  nn.Linear(32, 32), nn.ELU(alpha=0.5), nn.Dropout(0.2), nn.Softplus(beta=0.5),
                                  nn.Hardswish(), nn.Identity(), nn.GELU(approximate="tanh"), nn.Linear(32, 5),
                                  nn.LogSoftmax(-1)), [(16,)], gen_randn),
    # Composites (python/kiln_nn.py; Kiln's nn::Residual, nn::Sum, nn::Concat), in tests/runtime/golden_graph_cases.inc.
    # The first three are the examples of the issue that introduced them, narrower (resmlp: 64 -> 256 -> 512 there).
    ("net_graph_resmlp", lambda: S(nn.Linear(32, 64),
                                   Residual(LayerNorm(64), nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64)),
                                   Residual(LayerNorm(64), nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64)),
                                   nn.Linear(64, 10)), [(32,)], gen_randn),
    ("net_graph_nerf", lambda: S(Concat(nn.Identity(), nn.Sequential(nn.Linear(63, 64), nn.ReLU())),
                                 nn.Linear(127, 64), nn.ReLU(), nn.Linear(64, 4)), [(63,)], gen_randn),
    ("net_graph_two_path", lambda: S(Sum(nn.Linear(32, 32),
                                         nn.Sequential(nn.Linear(32, 8), nn.Tanh(), nn.Linear(8, 32)))),
     [(32,)], gen_randn),
    # A Residual in a Concat branch, a Sum in a Residual's body and in a Sequential branch.
    ("net_graph_nested", lambda: S(nn.Linear(12, 16),
                                   Concat(Residual(nn.Linear(16, 16), nn.ReLU()),
                                          nn.Sequential(nn.Linear(16, 8),
                                                        Sum(nn.Identity(), nn.Sequential(nn.Linear(8, 8), nn.Tanh())))),
                                   Residual(Sum(nn.Linear(24, 24), nn.Sequential(LayerNorm(24), nn.Linear(24, 24))),
                                            nn.GELU()),
                                   nn.Linear(24, 5)), [(12,)], gen_randn),
    # Four levels: Residual > Concat > Sum > Residual, with the network's input as the first skip.
    ("net_graph_deep", lambda: S(Residual(Concat(Sum(Residual(nn.Linear(6, 6), nn.Tanh()), nn.Linear(6, 6)),
                                                 nn.Identity()),
                                          nn.Linear(12, 6)),
                                 nn.SiLU(), nn.Linear(6, 3)), [(6,)], gen_randn),
    # Concat along dims other than the last on a [N, 4, 6] input (nn::dim<1>, nn::dim<-2>), a BatchNorm1d over
    # dim 1 as a branch, a Sum and a Softmax on rank-3 values.
    ("net_graph_concat_dims", lambda: S(Concat(nn.Identity(), nn.Sequential(nn.Linear(6, 6), nn.ReLU()), dim=1),
                                        Concat(nn.Linear(6, 3), nn.Identity()),
                                        Concat(nn.Identity(), nn.Softmax(-1), dim=-2),
                                        Sum(nn.Identity(), nn.Linear(9, 9)),
                                        nn.Flatten(), nn.Linear(144, 5)), [(4, 6)], gen_randn),
    ("net_graph_concat_bn", lambda: S(Concat(nn.BatchNorm1d(4), nn.Identity(), dim=1), nn.Tanh(),
                                      Concat(nn.Identity(), nn.Sequential(nn.Linear(6, 2), nn.Dropout(0.5)), dim=2),
                                      nn.Flatten(), nn.Linear(64, 3)), [(4, 6)], gen_randn),
    # BatchNorm1d and Dropout inside branches; five Dropouts (streams 0..4 in depth-first order: Sum's branch 0,
    # branch 1, Concat's branch 0, the Residual body in Concat's branch 2, the last layer).
    ("net_graph_bn_dropout", lambda: S(nn.Linear(10, 16),
                                       Sum(nn.Sequential(nn.BatchNorm1d(16), nn.Dropout(0.5)),
                                           nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.25)),
                                           nn.Identity()),
                                       nn.ReLU(),
                                       Concat(nn.Dropout(0.3),
                                              nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8, momentum=None)),
                                              Residual(nn.Dropout(0.5), nn.Linear(16, 16))),
                                       nn.Dropout(0.2), nn.Linear(40, 4)), [(10,)], gen_randn),
    # Residual bodies of Identity and Dropout only (y = 2x, x + dropout(x)), one of them on the network's input.
    ("net_graph_residual_identity", lambda: S(Residual(nn.Dropout(0.5)), Residual(nn.Identity()), nn.Linear(8, 8),
                                              Residual(nn.Identity(), nn.Dropout(0.25), nn.Identity()),
                                              nn.Linear(8, 3)), [(8,)], gen_randn),
    # Identity twice in a Concat and in a Sum; a Concat as the last layer.
    ("net_graph_concat_identity", lambda: S(Concat(nn.Identity(), nn.Identity()), Sum(nn.Identity(), nn.Identity()),
                                            Concat(nn.Identity(), nn.Linear(10, 3), nn.Identity()),
                                            Concat(nn.Linear(23, 4), nn.Sequential(nn.Linear(23, 2), nn.Sigmoid()))),
     [(5,)], gen_randn),
    # NaN and +-Inf in the inputs (gen_nonfinite): every layer must give what PyTorch gives, forward and backward
    # (a NaN never turns into a number; a dropped NaN is still NaN, as PyTorch multiplies by the mask).
    ("nonfinite_linear", lambda: S(nn.Linear(20, 30)), [(20,)], gen_nonfinite),
    ("nonfinite_bilinear", lambda: S(nn.Bilinear(6, 5, 4)), [(6,), (5,)], gen_nonfinite),
    ("nonfinite_relu", lambda: S(nn.ReLU()), [(3, 17)], gen_nonfinite),
    ("nonfinite_sigmoid", lambda: S(nn.Sigmoid()), [(50,)], gen_nonfinite),
    ("nonfinite_tanh", lambda: S(nn.Tanh()), [(50,)], gen_nonfinite),
    ("nonfinite_gelu", lambda: S(nn.GELU()), [(50,)], gen_nonfinite),
    ("nonfinite_gelu_tanh", lambda: S(nn.GELU(approximate="tanh")), [(50,)], gen_nonfinite),
    ("nonfinite_silu", lambda: S(nn.SiLU()), [(50,)], gen_nonfinite),
    ("nonfinite_leaky_relu", lambda: S(nn.LeakyReLU(negative_slope=0.2)), [(50,)], gen_nonfinite),
    ("nonfinite_elu", lambda: S(nn.ELU(alpha=0.7)), [(50,)], gen_nonfinite),
    ("nonfinite_softplus", lambda: S(nn.Softplus(beta=2.0, threshold=5.0)), [(50,)], gen_nonfinite),
    ("nonfinite_hardswish", lambda: S(nn.Hardswish()), [(50,)], gen_nonfinite),
    ("nonfinite_softmax", lambda: S(nn.Softmax(dim=-1)), [(10,)], gen_nonfinite),
    ("nonfinite_softmax_dim1", lambda: S(nn.Softmax(dim=1)), [(4, 6)], gen_nonfinite),
    ("nonfinite_log_softmax", lambda: S(nn.LogSoftmax(dim=-1)), [(10,)], gen_nonfinite),
    ("nonfinite_dropout", lambda: S(nn.Dropout(0.5)), [(32,)], gen_nonfinite),
    ("nonfinite_flatten", lambda: S(nn.Flatten()), [(2, 3, 4)], gen_nonfinite),
    ("nonfinite_batchnorm", lambda: S(nn.BatchNorm1d(8)), [(8,)], gen_nonfinite),
    ("nonfinite_layernorm", lambda: S(LayerNorm(16)), [(16,)], gen_nonfinite),
    ("nonfinite_rmsnorm", lambda: S(RMSNorm(16)), [(16,)], gen_nonfinite),
    ("nonfinite_rmsnorm_tutorial", lambda: S(RMSNorm(16, eps=1e-6, eps_placement="added_to_rms")), [(16,)],
     gen_nonfinite),
    # The example of the issue that asked for this: Linear -> ReLU -> Linear on a row with one NaN gives NaN logits.
    ("net_nonfinite_mlp", lambda: S(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)), [(16,)], gen_nonfinite),
    ("net_nonfinite_norms", lambda: S(nn.Linear(16, 32), LayerNorm(32), nn.Tanh(), nn.Dropout(0.5), nn.Linear(32, 32),
                                      nn.BatchNorm1d(32), nn.Sigmoid(), nn.Linear(32, 10), nn.Softmax(-1)),
     [(16,)], gen_nonfinite),
    ("net_graph_nonfinite", lambda: S(nn.Linear(12, 16), Residual(LayerNorm(16), nn.Linear(16, 16), nn.GELU()),
                                      Concat(nn.Identity(), nn.Sequential(nn.Dropout(0.5), nn.Linear(16, 8))),
                                      Sum(nn.Identity(), nn.Linear(24, 24)), nn.Linear(24, 4)),
     [(12,)], gen_nonfinite),
    # Rows longer than a vector (two of 16 lanes and 8 more), as the kernels' vector paths take them.
    ("softmax_wide", lambda: S(nn.Softmax(dim=-1)), [(40,)], gen_randn),
    ("log_softmax_wide", lambda: S(nn.LogSoftmax(dim=-1)), [(40,)], gen_large),
    ("nonfinite_softmax_wide", lambda: S(nn.Softmax(dim=-1)), [(40,)], gen_nonfinite),
    ("nonfinite_log_softmax_wide", lambda: S(nn.LogSoftmax(dim=-1)), [(40,)], gen_nonfinite),
    # Rows of 67: four chains of 16 lanes, then a vector of 3 (the MLIR kernel), NaN and Inf in any chain.
    ("nonfinite_softmax_long", lambda: S(nn.Softmax(dim=-1)), [(67,)], gen_nonfinite_spread),
    ("nonfinite_log_softmax_long", lambda: S(nn.LogSoftmax(dim=-1)), [(67,)], gen_nonfinite_spread),
    # Along a dim between others ([N, 3, 5, 20] over the 5): 16 positions of the 20 side by side, then 4 masked.
    ("softmax_inner", lambda: S(nn.Softmax(dim=2)), [(3, 5, 20)], gen_randn),
    ("log_softmax_inner", lambda: S(nn.LogSoftmax(dim=2)), [(3, 5, 20)], gen_large),
    ("nonfinite_softmax_inner", lambda: S(nn.Softmax(dim=2)), [(3, 5, 20)], gen_nonfinite),
    ("nonfinite_log_softmax_inner", lambda: S(nn.LogSoftmax(dim=2)), [(3, 5, 20)], gen_nonfinite),
]


# --------------------------------------------------------------------------
# Kiln declaration of a case (metadata `kiln_network`; the case lists)
# --------------------------------------------------------------------------
def kiln_network(model, shapes):
    return spelling.network(model, shapes)


def perturb(model):
    """Make norm parameters / running stats non-trivial (torch RNG, fixed order)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.2)
                if m.track_running_stats:
                    m.running_mean.normal_(0.0, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.num_batches_tracked.fill_(7)
            elif isinstance(m, (nn.LayerNorm, LayerNormNoBias, RMSNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.uniform_(0.5, 1.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.normal_(0.0, 0.2)


def tensor_out(t):
    t = t.detach().contiguous().clone()
    if t.dtype.is_floating_point:
        t = t.float()  # outputs are computed in float64 (see forward) and stored rounded to float32
    return t


def forward(model, inputs):
    """The exact answer for float32 weights and inputs: PyTorch in float64 (the caller rounds it to float32).
    A float32 PyTorch output carries its own rounding error (~1e-6 after a 784-wide matmul and a train-mode
    BatchNorm); against the float64 answer the 1e-5 tolerance measures Kiln's error alone."""
    with torch.no_grad():
        return model.double()(*[x.double() for x in inputs])


def canonicalize_header(path):
    """safetensors' Rust writer keeps __metadata__ in a HashMap, so the order of
    metadata keys changes from run to run.  Rewrite the JSON header with the
    metadata keys sorted (tensor entries and data bytes untouched)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    new = {}
    if meta is not None:
        new["__metadata__"] = dict(sorted(meta.items()))
    new.update(header)
    text = json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)


def make_case(idx, name, builder, shapes, gen, outdir):
    case_seed = CASE_SEED_BASE + idx
    dropout_seed = DROPOUT_SEED_BASE + idx
    torch.manual_seed(case_seed)
    model = builder()
    perturb(model)
    model.eval()
    init = {k: tensor_out(v) for k, v in model.state_dict().items()}
    buffer_keys = [k for k, _ in model.named_buffers()]
    assert all(k in init for k in buffer_keys)
    # Size rules (see README): train.out.b{B} is stored only when train mode
    # differs from eval (a BatchNorm1d or Dropout is present); eval.out.b{B} is
    # omitted when every layer is a Dropout (eval is the identity on in0).
    leaves = [m for m in model.modules() if not list(m.children())]
    train_differs = any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in leaves)
    composite = any(isinstance(m, (Residual, Sum, Concat)) for m in model.modules())
    eval_is_identity = not composite and all(isinstance(m, nn.Dropout) for m in leaves)
    if not train_differs:
        assert not buffer_keys, (name, buffer_keys)

    tensors = dict(init)
    meta = {
        "dropout_seed": str(dropout_seed),
        "case_seed": str(case_seed),
        "network": str(model),
        "kiln_network": kiln_network(model, shapes),
        "batch_sizes": ",".join(str(b) for b in BATCH_SIZES),
        "per_sample_shape": ",".join(str(d) for d in shapes[0]),
    }
    for i, s in enumerate(shapes[1:], start=1):
        meta[f"per_sample_shape{i}"] = ",".join(str(d) for d in s)

    for B in BATCH_SIZES:
        inputs = [gen((B,) + tuple(s)) for s in shapes]
        for i, x in enumerate(inputs):
            tensors[f"in{i}.b{B}"] = tensor_out(x)

        # eval forward on the initial state
        m = copy.deepcopy(model).eval()
        eval_out = None
        try:
            eval_out = tensor_out(forward(m, inputs))
        except ValueError as e:
            meta[f"eval_error.b{B}"] = str(e)
        else:
            if eval_is_identity:
                assert len(inputs) == 1 and identical(eval_out, inputs[0]), (name, B)
            else:
                tensors[f"eval.out.b{B}"] = eval_out

        # one train forward from a fresh copy of the initial state
        m = copy.deepcopy(model)
        replace_dropouts(m, dropout_seed, step=0)
        m.train()
        try:
            out = forward(m, inputs)
        except ValueError as e:
            meta[f"train_error.b{B}"] = str(e)
        else:
            if not train_differs:
                assert eval_out is not None and identical(tensor_out(out), eval_out), (name, B)
                continue
            tensors[f"train.out.b{B}"] = tensor_out(out)
            sd = m.state_dict()
            for k in buffer_keys:
                tensors[f"train.state.b{B}.{k}"] = tensor_out(sd[k])

    path = os.path.join(outdir, f"{name}.safetensors")
    save_file(tensors, path, metadata=meta)
    canonicalize_header(path)
    return path, tensors, meta


def verify(path, tensors, meta):
    back = load_file(path)
    assert set(back) == set(tensors), (path, set(back) ^ set(tensors))
    for k, v in tensors.items():
        b = back[k]
        assert identical(b, v), (path, k)
        if k.endswith("num_batches_tracked"):
            assert b.dtype == torch.int64 and b.shape == torch.Size([]), (path, k)
        else:
            assert b.dtype == torch.float32, (path, k)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
    assert hdr["__metadata__"] == meta, path


CASE_LISTS = (
    ("golden_layer_cases.inc", "Every layer alone", lambda name: not name.startswith("net_")),
    ("golden_network_cases.inc", "The golden networks",
     lambda name: name.startswith("net_") and not name.startswith("net_graph_")),
    # Networks with composites (Residual, Sum, Concat): a list of their own, for the backends that run them.
    ("golden_graph_cases.inc", "The networks with composites",
     lambda name: name.startswith("net_graph_")),
)


def write_case_lists(metas, incdir):
    """tests/runtime/golden_*_cases.inc: KILN_CASE(name, declaration) per case, from its kiln_network."""
    for filename, what, selected in CASE_LISTS:
        lines = [f"// {what}: KILN_CASE(name, declaration) per golden file in tests/golden/data. Written by",
                 "// tests/golden/make_goldens.py from each case's kiln_network; do not edit. Each test file defines",
                 "// KILN_CASE to the check it runs, then includes this list."]
        lines += [f'KILN_CASE("{name}", {meta["kiln_network"]})' for name, meta in sorted(metas.items())
                  if selected(name)]
        with open(os.path.join(incdir, filename), "w") as f:
            f.write("\n".join(lines) + "\n")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data")
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    assert torch.get_default_dtype() == torch.float32
    self_test_philox()
    names = [c[0] for c in CASES]
    assert len(set(names)) == len(names)

    metas = {}
    for idx, (name, builder, shapes, gen) in enumerate(CASES):
        path, tensors, meta = make_case(idx, name, builder, shapes, gen, outdir)
        verify(path, tensors, meta)
        metas[name] = meta
        errs = sorted(k for k in meta if k.endswith(tuple(f"error.b{b}" for b in BATCH_SIZES)))
        print(f"{name:22s} {len(tensors):3d} tensors {os.path.getsize(path):9d} B"
              + (f"  errors: {', '.join(errs)}" if errs else ""))

    # sanity: Kiln mask keeps ~ (1-p) and the dropout_p05 case matches its mask
    d = load_file(os.path.join(outdir, "dropout_p05.safetensors"))
    x, y = d["in0.b1000"], d["train.out.b1000"]
    kept = (y != 0).float().mean().item()
    assert 0.48 < kept < 0.52, kept
    assert torch.equal(y[y != 0], x[y != 0] * 2), "kept values must be x * 2"
    d1 = load_file(os.path.join(outdir, "dropout_p1.safetensors"))
    assert all(torch.count_nonzero(d1[f"train.out.b{b}"]) == 0 for b in BATCH_SIZES)
    d0 = load_file(os.path.join(outdir, "dropout_p0.safetensors"))
    assert all(torch.equal(d0[f"train.out.b{b}"], d0[f"in0.b{b}"]) for b in BATCH_SIZES)
    print(f"dropout_p05: fraction kept at B=1000 ({x.numel()} elements) = {kept:.5f}")
    write_case_lists(metas, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime"))

    # net_two_dropouts: the second Dropout (p=0.25) must use stream 1
    idx = names.index("net_two_dropouts")
    d2 = load_file(os.path.join(outdir, "net_two_dropouts.safetensors"))
    seed = DROPOUT_SEED_BASE + idx
    for b in BATCH_SIZES:
        x = d2[f"in0.b{b}"]
        with torch.no_grad():
            h = F.linear(x, d2["0.weight"], d2["0.bias"])
            h = kiln_dropout(h, 0.5, seed, 0, 0).relu()
            y = F.linear(kiln_dropout(h, 0.25, seed, 1, 0), d2["4.weight"], d2["4.bias"])
            y_s0 = F.linear(kiln_dropout(h, 0.25, seed, 0, 0), d2["4.weight"], d2["4.bias"])
        assert torch.allclose(y, d2[f"train.out.b{b}"], rtol=1e-5, atol=1e-5), b
        assert b == 1 or not torch.allclose(y_s0, d2[f"train.out.b{b}"], rtol=1e-5, atol=1e-5), b
    check_graph_dropout_streams(outdir, names)


def check_graph_dropout_streams(outdir, names):
    """net_graph_bn_dropout, recomputed with functional ops and the streams written out: Kiln numbers the
    Dropouts depth first (Sum's branches in order, then Concat's, a Residual's body in place), 0..4."""
    idx = names.index("net_graph_bn_dropout")
    d = {k: v.double() if v.dtype.is_floating_point else v
         for k, v in load_file(os.path.join(outdir, "net_graph_bn_dropout.safetensors")).items()}
    seed = DROPOUT_SEED_BASE + idx

    def run(streams, B):
        drop = [lambda t, p=p, s=s: kiln_dropout(t, p, seed, s, 0)
                for p, s in zip((0.5, 0.25, 0.3, 0.5, 0.2), streams)]

        def lin(t, k):
            return F.linear(t, d[f"{k}.weight"], d[f"{k}.bias"])

        def bn(t, k):  # train mode: the batch's statistics (the running ones only get updated)
            return F.batch_norm(t, d[f"{k}.running_mean"].clone(), d[f"{k}.running_var"].clone(), d[f"{k}.weight"],
                                d[f"{k}.bias"], training=True)

        with torch.no_grad():
            h = lin(d[f"in0.b{B}"], "0")
            s = drop[0](bn(h, "1.branches.0.0")) + drop[1](lin(h, "1.branches.1.0")) + h
            r = s.relu()
            c = torch.cat([drop[2](r), bn(lin(r, "3.branches.1.0"), "3.branches.1.1"),
                           r + lin(drop[3](r), "3.branches.2.body.1")], -1)
            return lin(drop[4](c), "5")

    for B in BATCH_SIZES[1:]:  # B = 1: BatchNorm1d in train mode refuses one value per channel
        want = d[f"train.out.b{B}"]
        assert torch.allclose(run((0, 1, 2, 3, 4), B), want, rtol=1e-5, atol=1e-6), B
        for wrong in ((1, 0, 2, 3, 4), (0, 1, 3, 2, 4), (0, 1, 2, 3, 0)):
            assert not torch.allclose(run(wrong, B), want, rtol=1e-5, atol=1e-6), (B, wrong)
    print("net_graph_bn_dropout: Dropout streams 0..4 in depth-first order")


if __name__ == "__main__":
    main()
