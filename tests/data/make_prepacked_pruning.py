"""Write tests/data/prepacked_pruning.bfc with the code of main before the pruning record
(per-field pruning arrays in memory), for tests/test_pruning_record.py.

Run from the repository root with the old code importable, e.g. its ``src`` on PYTHONPATH
(``kernels`` linked in as ``src/banditfleet/kernels``). The workload is the test's
``drive_prefix``: keep the two in step.
"""

import numpy as np

from banditfleet.pruning import PruningGTSBatchSizeOptimizer

# job -> (batch sizes, default, largest batch size that reaches the target, cycles before the save)
JOBS = {
    "a": ([8, 16, 32, 64, 128], 32, 64, 3),
    "b": ([16, 32, 48, 64, 96, 128, 256], 64, 128, 9),
    "c": ([8, 24, 32, 96], 24, 32, 14),
    "d": ([32, 64, 128, 256, 512], 128, 256, 5),
}


def drive_prefix(opt, predict, observe, rng):
    """Each job's cycles (predict, observe) before the save, then one more predict of job d
    (its result is awaited in the checkpoint)."""
    for cycle in range(max(v[3] for v in JOBS.values())):
        for job, (_, _, reach, cycles) in JOBS.items():
            if cycle < cycles:
                bs = predict(job)
                observe(job, bs, float(rng.uniform(1.0, 10.0)), bs <= reach)
    return predict("d")


if __name__ == "__main__":
    opt = PruningGTSBatchSizeOptimizer(window_size=4, seed=17, verbose=False)
    for job, (arms, default, _, _) in JOBS.items():
        opt.register_job(job, arms, default)
    drive_prefix(opt, opt.predict, opt.observe, np.random.default_rng(42))
    opt.save("tests/data/prepacked_pruning.bfc")
