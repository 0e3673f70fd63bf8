"""Performance benchmarks of banditfleet: the cases behind ``banditfleet bench`` and ``benchmarks/``.

* :mod:`~banditfleet.bench.cases`: every case (name, setup, our side, its
  comparison, the floor or reference it is compared with) and the sizes
  (:class:`~banditfleet.bench.cases.Config`).
* :mod:`~banditfleet.bench.runner`: repeats, medians, spreads and same-run
  ratios; the report and its table.
* :mod:`~banditfleet.bench.suite`: :func:`run_bench`, the standard suite of
  ``banditfleet bench`` (rows, scaling, compile time, plots).
* :mod:`~banditfleet.bench.scaling`: time and memory against the number of
  jobs and arms; numba compile time, cold and warm.
* :mod:`~banditfleet.bench.plots`: the scaling plots (matplotlib, optional).
* :mod:`~banditfleet.bench.fleets`, :mod:`~banditfleet.bench.draws`: the
  fleets and draw loops the cases time, shared with ``benchmarks/``.

See docs/performance.md for the method and the current figures.
"""

from banditfleet.bench.cases import CASES, GROUPS, Case, Config, Prepared, select
from banditfleet.bench.runner import Report, Row, Timing, make_row, measure_pair, run_cases
from banditfleet.bench.suite import format_report, run_bench

__all__ = [
    "CASES",
    "GROUPS",
    "Case",
    "Config",
    "Prepared",
    "select",
    "Report",
    "Row",
    "Timing",
    "make_row",
    "measure_pair",
    "run_cases",
    "run_bench",
    "format_report",
]
