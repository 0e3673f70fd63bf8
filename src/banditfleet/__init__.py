"""banditfleet: fleets of Gaussian Thompson-sampling bandits, decision-identical to Zeus.

The reference-shaped API is importable from here as a drop-in for
``zeus._legacy.policy`` (see docs/optimizers.md).
"""

from banditfleet.gts import GTSBatchSizeOptimizer
from banditfleet.job import Job
from banditfleet.pair import OptimizerPair, load_pair, open_pair, save_pair
from banditfleet.power import NEEDS_PROFILING, JITPowerLimitOptimizer
from banditfleet.pruning import PruningExploreManager, PruningGTSBatchSizeOptimizer
from banditfleet.replay import HistoryEntry, Simulator

__version__ = "0.1.0"

__all__ = ["GTSBatchSizeOptimizer", "Job", "JITPowerLimitOptimizer", "NEEDS_PROFILING", "OptimizerPair", "PruningExploreManager", "PruningGTSBatchSizeOptimizer", "HistoryEntry", "Simulator", "load_pair", "open_pair", "save_pair", "__version__"]
