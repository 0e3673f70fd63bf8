"""Write tests/data/pre_settings_*.bfc with banditfleet from before per-job settings.

Run once with main at 074be13 on the path (the files in this folder were made so):

    PYTHONPATH=<checkout of 074be13>/src python tests/data/make_pre_settings_checkpoints.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import banditfleet  # noqa: E402
from settings_scenario import JOBS, PREFIX, SCENARIOS, drive, register  # noqa: E402

for name, (cls_name, cfg) in SCENARIOS.items():
    opt = getattr(banditfleet, cls_name)(verbose=False, **cfg)
    register(opt, cls_name.startswith("Pruning"))
    drive(opt, 0, PREFIX)
    opt.save(HERE / f"pre_settings_{name}.bfc")
    print(name, (HERE / f"pre_settings_{name}.bfc").stat().st_size)

# A journaled folder: its checkpoint holds no job, its journal every call
# (register records with per-job seeds, the only per-job setting then).
folder = HERE / "pre_settings_folder"
opt = banditfleet.PruningGTSBatchSizeOptimizer.open(folder, window_size=3, seed=21)
keys = list(JOBS)
opt.register_jobs(keys, [arms for arms, _ in JOBS.values()], default_bs=[d for _, d in JOBS.values()], seeds=[5, 6, 7])
drive(opt, 0, PREFIX)
opt.close()
print("folder", sorted(p.name for p in folder.iterdir()))
