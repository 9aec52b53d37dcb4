"""Harrell's C-index: minmaxfuse vs scikit-survival vs lifelines, same inputs, one process.

Run: ``python benchmarks/bench_survival.py`` (add ``--quick`` to skip n = 1e5 for sksurv, whose
O(n^2) loop takes about a minute there). Prints a markdown table of median wall-clock seconds and
speed ratios, and asserts that the three libraries return the same C-index (sksurv: bit-identical;
lifelines: to 1e-12 with ``tied_tol=0``, as lifelines has no tie tolerance; it is fed ``-risk``
because its scores mean "longer survival").
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

from minmaxfuse.survival import concordance_index


def _median_time(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _data(n, ties, rng):
    time_ = rng.exponential(size=n)
    event = rng.random(n) < 0.57
    risk = rng.normal(size=n) - time_
    if ties:  # heavy ties: times and risks rounded to 0.1
        time_, risk = np.round(time_, 1), np.round(risk, 1)
    return event, time_, risk


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip sksurv at n = 1e5")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from lifelines.utils import concordance_index as lifelines_cindex
    from sksurv.metrics import concordance_index_censored

    rng = np.random.default_rng(0)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}"
    )
    print(
        "| n | ties | minmaxfuse (s) | sksurv (s) | lifelines (s) | sksurv / ours | "
        "lifelines / ours | C-index |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in (1_000, 10_000, 100_000):
        for ties in (False, True):
            event, time_, risk = _data(n, ties, rng)
            reps = {1_000: 15, 10_000: 7, 100_000: 3}[n]
            t_ours, c_ours = _median_time(
                lambda e=event, t=time_, r=risk: concordance_index(event=e, time=t, risk=r), reps
            )
            t_ll, c_ll = _median_time(
                lambda e=event, t=time_, r=risk: lifelines_cindex(t, -r, e), max(1, reps // 2)
            )
            # lifelines has no tie tolerance: compare with tied_tol=0 (at n = 1e5 a few continuous
            # risk pairs lie within sksurv's default 1e-8 and move C by ~1e-10)
            c_exact = concordance_index(event=event, time=time_, risk=risk, tied_tol=0.0)
            assert abs(c_exact - c_ll) <= 1e-12, (n, ties, c_exact, c_ll)
            if n == 100_000 and args.quick:
                t_sk = float("nan")
            else:
                t_sk, res = _median_time(
                    lambda e=event, t=time_, r=risk: concordance_index_censored(e, t, r),
                    1 if n == 100_000 else max(1, reps // 2),
                )
                assert c_ours == res[0], (n, ties, c_ours, res[0])
            print(
                f"| {n:.0e} | {'yes' if ties else 'no'} | {t_ours:.4f} | {t_sk:.3f} | {t_ll:.4f} | "
                f"{t_sk / t_ours:.1f}x | {t_ll / t_ours:.1f}x | {c_ours:.6f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
