"""Columnar history of a fleet replay: an Arrow table built straight from the result arrays.

One row per simulated run that started, in unit order (settings, then groups),
each unit's runs in the order they ended (the reference's history order). The
string columns are dictionary-encoded (one entry per setting, group and
dataset, int32 indices), so no Python object is made per run. See
``docs/replay.md`` ("Output files") for the schema and its units.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from banditfleet.errors import OutputError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from banditfleet.replay.fleet import FleetResult

__all__ = ["HISTORY_FORMATS", "HISTORY_COLUMNS", "history_table", "write_history"]

#: Values of ``banditfleet replay --history-format``.
HISTORY_FORMATS = ("parquet", "csv", "none")

#: The history's columns: name, Arrow type, unit or meaning.
HISTORY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("setting", "dictionary<int32, string>", "the setting's label (policy, eta, beta, ..., seed)"),
    ("policy", "dictionary<int32, string>", "the setting's policy (pruning-gts, gts, gts-known, grid-search, default, oracle)"),
    ("group", "dictionary<int32, string>", "group id"),
    ("dataset", "dictionary<int32, string>", "the group's workload"),
    ("submission", "int32", "submission index in the group (0-based)"),
    ("batch_size", "int32", "batch size"),
    ("power_limit_W", "int32", "power limit, W"),
    ("energy_J", "float64", "energy of the run, J (scaled by the runtime ratio)"),
    ("time_s", "float64", "time of the run, s (scaled by the runtime ratio)"),
    ("reached", "bool", "the run reached the target metric"),
    ("cost_J", "float64", "energy-time cost eta*energy + (1-eta)*max_power*time, J"),
)


def _dictionary(indices: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32, copy=False)), pa.array(values, pa.string()))


def history_table(result: FleetResult) -> pa.Table:
    """Every run of ``result`` as a ``pyarrow.Table`` with the :data:`HISTORY_COLUMNS` schema."""
    import pyarrow as pa

    r = result.result
    fleet = result.fleet
    g = len(fleet)
    setting = r.unit // max(g, 1)
    group = r.unit - setting * g
    wl = fleet.group_wl[group]
    eta = np.array([s.eta_knob for s in result.settings], np.float64)[setting]
    max_power = fleet.workloads.tables.wl_max_power[wl]
    cost = eta * r.energy + (1.0 - eta) * max_power * r.time
    policies = list(dict.fromkeys(s.policy for s in result.settings))
    policy_index = np.array([policies.index(s.policy) for s in result.settings], np.int64)
    columns = {
        "setting": _dictionary(setting, [s.label for s in result.settings]),
        "policy": _dictionary(policy_index[setting], policies),
        "group": _dictionary(group, list(fleet.group_ids)),
        "dataset": _dictionary(wl, [j.dataset for j in fleet.workloads.jobs]),
        "submission": pa.array(r.sub.astype(np.int32)),
        "batch_size": pa.array(r.bs.astype(np.int32)),
        "power_limit_W": pa.array(r.pl.astype(np.int32)),
        "energy_J": pa.array(r.energy),
        "time_s": pa.array(r.time),
        "reached": pa.array(np.asarray(r.reached, bool)),
        "cost_J": pa.array(cost),
    }
    return pa.table(columns)


def write_history(result: FleetResult, directory: str | os.PathLike, history_format: str = "parquet", table: Any = None) -> Path | None:
    """Write ``history.parquet`` or ``history.csv`` to ``directory``; ``None`` for ``"none"``.

    Parquet is snappy-compressed with the string columns kept dictionary-encoded
    (pandas reads them as categoricals). CSV has a header and one line per run.
    """
    if history_format not in HISTORY_FORMATS:
        raise OutputError(f"history format must be one of {list(HISTORY_FORMATS)}, got {history_format!r}")
    if history_format == "none":
        return None
    t = table if table is not None else history_table(result)
    path = Path(directory) / f"history.{history_format}"
    if history_format == "parquet":
        import pyarrow.parquet as pq

        # Dictionary pages only where values repeat; floats go plain (faster, as small).
        pq.write_table(t, path, compression="snappy", use_dictionary=["setting", "policy", "group", "dataset", "submission", "batch_size", "power_limit_W"])
    else:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        plain = pa.table({name: (col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col) for name, col in zip(t.column_names, t.columns)})
        pacsv.write_csv(plain, path, pacsv.WriteOptions(quoting_style="needed"))
    return path
