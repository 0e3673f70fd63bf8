"""The jitted numerical core of banditfleet.

Pure functions over arrays, no Python objects and no I/O: per-job random
streams (:mod:`.streams`), numpy-exact distributions (:mod:`.distributions`),
reward statistics and posterior updates (:mod:`.stats`), batched Thompson
sampling (:mod:`.thompson`) and the pruning state machine (:mod:`.pruning`).
Installed as ``banditfleet.kernels``.
"""
