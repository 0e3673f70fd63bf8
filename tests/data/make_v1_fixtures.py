import numpy as np
from banditfleet.gts import GTSBatchSizeOptimizer
from banditfleet.pruning import PruningGTSBatchSizeOptimizer
from banditfleet.power import JITPowerLimitOptimizer
from banditfleet.pair import save_pair

g = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=7, verbose=False)
g.register_jobs(["a", "b", "c"], [[8, 16, 32], [16, 32], [4, 8, 16, 64]], seeds=[1, 2, 3])
g.register_jobs(["d"], [[32, 64]])
rng = np.random.default_rng(0)
for _ in range(25):
    for k in ["a", "b", "c", "d"]:
        bs = g.predict(k)
        g.observe(k, bs, float(rng.uniform(1, 10)))
g.save("tests/data/v1_gts.ckpt")
p = PruningGTSBatchSizeOptimizer(window_size=3, seed=11, verbose=False)
p.register_jobs(["x", "y"], [[8, 16, 32, 64], [16, 32, 64]], default_bs=[32, 32], seeds=[5, 6])
for _ in range(20):
    for k in ["x", "y"]:
        bs = p.predict(k)
        p.observe(k, bs, float(rng.uniform(1, 10)), True)
plo = JITPowerLimitOptimizer(verbose=False)
for k in ["x", "y"]:
    for bs in (16, 32):
        for pl in (100, 150, 200):
            plo.observe(k, bs, pl, float(rng.uniform(1, 10)))
p.save("tests/data/v1_pruning.ckpt")
plo.save("tests/data/v1_power.ckpt")
save_pair("tests/data/v1_pair.ckpt", p, plo)
