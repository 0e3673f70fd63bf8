"""The jitted numerical core of banditfleet.

Pure functions over arrays, no Python objects and no I/O: per-job random
streams (:mod:`.streams`), numpy-exact distributions (:mod:`.distributions`),
reward statistics and posterior updates (:mod:`.stats`), batched Thompson
sampling (:mod:`.thompson`), the pruning state machine (:mod:`.pruning`) and the
history-pool compaction of job removal (:mod:`.lifecycle`).
Installed as ``banditfleet.kernels``.
"""
