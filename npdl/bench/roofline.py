"""Where a measured step stands against the machine's ceilings (the roofline model).

Given a step's work (:class:`npdl.bench.work.Work`: ``flops`` and the minimum ``bytes``), its
median time and the ceilings of :func:`npdl.bench.peak.measure_peak`:

* ``gflops_per_s = flops / step time``: the rate achieved;
* ``peak_fraction = gflops_per_s / gemm_gflops_per_s``: the share of the measured GEMM rate;
* ``intensity = flops / bytes`` (FLOP per byte): above ``gemm / bandwidth`` (the ridge point) a
  step can be compute-bound, below it only memory-bound;
* ``roofline_ms = max(flops / peak FLOP rate, bytes / peak bandwidth)``: the least time the
  ceilings allow;
* ``overhead_ms = step time - roofline_ms``: the time neither ceiling explains (kernel launches,
  Python, allocation, synchronisation). At small batches it is most of a step. It can come out
  negative when a step beats a ceiling as measured (a working set in cache moves faster than
  the streaming bandwidth).
"""

from __future__ import annotations


def roofline_fields(flops: int, nbytes: int, median_ms: float, peak: dict | None) -> dict:
    """The fields a result record gains: ``flops``, ``bytes``, ``intensity``, ``gflops_per_s`` and, with
    ``peak``, ``peak_fraction``, ``roofline_ms`` and ``overhead_ms`` (None without a peak)."""
    seconds = median_ms / 1e3
    out = {"flops": int(flops), "bytes": int(nbytes), "intensity": flops / nbytes if nbytes else None,
           "gflops_per_s": flops / seconds / 1e9 if seconds > 0 else None,
           "peak_fraction": None, "roofline_ms": None, "overhead_ms": None}
    if peak and out["gflops_per_s"] is not None:
        gemm, bandwidth = peak["gemm_gflops_per_s"], peak["bandwidth_gb_per_s"]
        out["peak_fraction"] = out["gflops_per_s"] / gemm
        roofline_ms = max(flops / (gemm * 1e9), nbytes / (bandwidth * 1e9)) * 1e3
        out["roofline_ms"] = roofline_ms
        out["overhead_ms"] = median_ms - roofline_ms
    return out


def ridge_point(peak: dict) -> float:
    """The intensity (FLOP per byte) at which the two ceilings meet."""
    return peak["gemm_gflops_per_s"] / peak["bandwidth_gb_per_s"]
