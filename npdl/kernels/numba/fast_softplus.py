"""A float32 $\\log(1 + e^{-a})$, $a \\ge 0$, that Numba's loops can vectorise: the term of the binary
cross-entropy on logits (:mod:`.bce_logits`).

NumPy's float32 ``log1p`` is a scalar loop on CPUs without AVX-512 (13 ns per element on a 2-core
AMD EPYC with AVX2; its ``exp`` 4 ns), and in a Numba loop ``math.exp`` and ``math.log1p`` are
scalar calls into libm. Written with multiplications, additions, one division, a floor and
selects, the two functions below vectorise (8 float32 lanes with AVX2).

**exp(-a)** (:func:`exp_neg32`), Cody and Waite's reduction as in Cephes' ``expf``: with
$x = -a$, $k = \\lfloor x \\log_2 e + 1/2 \\rfloor$ and $r = x - k \\ln 2$ (``ln 2`` split into a
part exact in float32 and the rest), $|r| \\le \\ln 2 / 2$ and $e^x = 2^k e^r$; $e^r$ is its Taylor
polynomial of degree 7 (truncation below $6 \\cdot 10^{-9}$ relative) and $2^k$ is built from its
exponent bits. Beyond $a = 126 \\ln 2 \\approx 87.34$ the result would be under float32's least normal number,
$2^{-126}$; it is 0 there.

**log1p(e)** for $e \\in [0, 1]$ (:func:`log1p01_32`): $\\log(1 + e) = 2 \\operatorname{atanh} s$ with
$s = e / (2 + e) \\in [0, 1/3]$, and $2 \\operatorname{atanh} s = 2 s (1 + s^2/3 + s^4/5 + \\dots)$;
eight terms leave a truncation under $2 \\cdot 10^{-8}$ relative ($s^2 \\le 1/9$).

Against float64 ``log1p(exp(-a))`` rounded to float32, a dense sample of float32 ``a`` in
[0, 104] (``tests/test_bce_logits_kernel.py``) is within 4 units in the last place. No fused
multiply-adds (LLVM contracts nothing without ``fastmath``): the same bits on every x86-64 CPU.
Callers compile with ``error_model="numpy"`` (see :mod:`.fast_tanh`).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)  # few bits: k * _LN2_HI is exact for the k used here
_LN2_LO = np.float32(-2.12194440e-4)
_UNDER = np.float32(87.33654)  # 126 ln 2: e^-a is below 2^-126 (float32's least normal) beyond it
_HALF, _ONE, _TWO, _ZERO = np.float32(0.5), np.float32(1.0), np.float32(2.0), np.float32(0.0)
# 1/n! for n = 7 .. 2, the Taylor coefficients of e^r
_E7, _E6, _E5 = np.float32(1 / 5040), np.float32(1 / 720), np.float32(1 / 120)
_E4, _E3, _E2 = np.float32(1 / 24), np.float32(1 / 6), np.float32(0.5)
# 1/(2j + 1) for j = 7 .. 1, the series of atanh(s) / s in s^2
_L15, _L13, _L11, _L9 = np.float32(1 / 15), np.float32(1 / 13), np.float32(1 / 11), np.float32(1 / 9)
_L7, _L5, _L3 = np.float32(1 / 7), np.float32(1 / 5), np.float32(1 / 3)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (LLVM's ``bitcast``: no instruction)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@numba.njit(cache=True, inline="always", error_model="numpy")
def exp_neg32(a):
    """``exp(-a)`` for a float32 ``a >= 0`` (0 beyond ``a = 126 ln 2``; see the module's docstring)."""
    x = -min(a, _UNDER)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI
    r = r - k * _LN2_LO
    p = _E7 * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + _ONE
    p = p * r + _ONE
    scale = _float32_from_bits(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
    return _ZERO if a > _UNDER else p * scale


@numba.njit(cache=True, inline="always", error_model="numpy")
def log1p01_32(e):
    """``log(1 + e)`` for a float32 ``e`` in [0, 1] (see the module's docstring)."""
    s = e / (_TWO + e)
    q = s * s
    p = _L15 * q + _L13
    p = p * q + _L11
    p = p * q + _L9
    p = p * q + _L7
    p = p * q + _L5
    p = p * q + _L3
    p = p * q + _ONE
    return _TWO * s * p


@numba.njit(cache=True, inline="always", error_model="numpy")
def softplus_neg32(a):
    """``log(1 + exp(-a))`` for a float32 ``a >= 0``."""
    return log1p01_32(exp_neg32(a))
