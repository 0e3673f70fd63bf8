"""The jitted numerical core of banditfleet.

Pure functions over arrays, no Python objects and no I/O: per-job random
streams (:mod:`.streams`), numpy-exact distributions (:mod:`.distributions`),
reward statistics and posterior updates (:mod:`.stats`), batched Thompson
sampling (:mod:`.thompson`), the pruning state machine (:mod:`.pruning`) and the
history-pool compaction of job removal (:mod:`.lifecycle`), the journal frame
walk of recovery (:mod:`.frames`); the fleet handle
(:mod:`.handle`) and the top-level kernels over it (:mod:`.fleet`), with every
module's numba options in :mod:`._config`.
Installed as ``banditfleet.kernels``.
"""
