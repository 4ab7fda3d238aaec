#!/usr/bin/env python3
"""The polynomial coefficients of vlog/vlog1p and verf (codegen/et/include/kiln/et/vmath.hpp): minimax for the
weighted error by Remez exchange in 50-digit arithmetic (mpmath), printed highest degree first as float literals.

    python3 scripts/vmath_fit.py
"""
import struct

import mpmath as mp

mp.mp.dps = 50


def remez(f, w, degree, a, b, iters=30, grid=4000):
    """Polynomial c of the given degree minimising max |w(x) (f(x) - c(x))| on [a, b]: (coefficients, error)."""
    n = degree + 1
    ref = [(a + b) / 2 - (b - a) / 2 * mp.cos(mp.pi * i / n) for i in range(n + 1)]
    xs = [a + (b - a) * mp.mpf(i) / grid for i in range(grid + 1)]
    fx, wx = [f(x) for x in xs], [w(x) for x in xs]
    best = None
    for _ in range(iters):
        # c(x_i) + (-1)^i E / w(x_i) = f(x_i) on the reference points
        A = mp.matrix([[x**j for j in range(n)] + [(-1) ** i / w(x)] for i, x in enumerate(ref)])
        sol = mp.lu_solve(A, mp.matrix([f(x) for x in ref]))
        c = [sol[j] for j in range(n)]
        err = [wx[k] * (fx[k] - mp.polyval(c[::-1], x)) for k, x in enumerate(xs)]
        worst = max(abs(e) for e in err)
        if best is None or worst < best[1]:
            best = (c, worst)
        # the new reference: the largest error of each run of one sign
        runs, start = [], 0
        for k in range(1, len(xs) + 1):
            if k == len(xs) or mp.sign(err[k]) != mp.sign(err[start]):
                runs.append(max(range(start, k), key=lambda q: abs(err[q])))
                start = k
        while len(runs) > n + 1:
            runs.pop(0 if abs(err[runs[0]]) < abs(err[runs[-1]]) else -1)
        if len(runs) < n + 1:
            break
        ref = [xs[q] for q in runs]
    return best


def as_float(x):
    return struct.unpack("f", struct.pack("f", float(x)))[0]


def literal(x):
    """The shortest literal that reads back as the float nearest x."""
    v = as_float(x)
    for digits in range(6, 12):
        s = "%.*e" % (digits - 1, v)
        if as_float(float(s)) == v:
            return s + "f"


def show(name, fit):
    c, err = fit
    print(f"{name}: max weighted error {mp.nstr(err, 3)}")
    print("  " + ", ".join(literal(x) for x in reversed(c)))


# log(1 + f) = f - f^2/2 + f^3 P(f) on [sqrt(1/2) - 1, sqrt(2) - 1], relative to log(1 + f).
def log_p(f):
    return mp.mpf(1) / 3 - f / 4 + f * f / 5 if abs(f) < 1e-12 else (mp.log1p(f) - f + f * f / 2) / f**3


def log_w(f):
    return f * f if abs(f) < 1e-12 else abs(f**3 / mp.log1p(f))


show("log1p_reduced P", remez(log_p, log_w, 7, mp.sqrt(mp.mpf(1) / 2) - 1, mp.sqrt(2) - 1))


# erf(x) = x + x R(x^2) for |x| < 0.875, relative to erf: R(s) ~ erf(sqrt s) / sqrt s - 1.
def erf_over_x(s):
    return 2 / mp.sqrt(mp.pi) if s == 0 else mp.erf(mp.sqrt(s)) / mp.sqrt(s)


edge = mp.mpf("0.875")
show("verf R", remez(lambda s: erf_over_x(s) - 1, lambda s: 1 / erf_over_x(s), 5, mp.mpf(0), edge**2))
# erf(t) = 1 - exp(Q(t)) for t in [0.875, 4]: an error d in Q moves erf by erfc(t) d, weighted relative to erf.
show("verf Q", remez(lambda t: mp.log(mp.erfc(t)), lambda t: mp.erfc(t) / mp.erf(t), 6, edge, mp.mpf(4)))
