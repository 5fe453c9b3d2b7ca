"""Data-parallel training through Lightning: two CPU processes (gloo) train to
the parameters of one process on the same global batches.

Lightning gives each training process a shuffling DistributedSampler (seed 0,
reshuffled by epoch, whatever ``shuffle`` says): of each epoch's permutation
``perm``, rank r takes ``perm[r::2]``, so global batch k is ``perm[4k:4k + 4]``
split 2 + 2. DDP averages the two processes' mean-loss gradients, which is the
gradient of the mean over the 4. The single process trains on the same
permutations, batches of 4, one epoch per `fit` (the optimizer state carries).
"""

import os
import subprocess
import sys

import nengo
import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from snntorch_nengo import Simulator

from networks import relu_channel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 3
LR = 1e-3


# ddp_worker.py builds the same network
make_net = relu_channel


def make_data():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (8, 10, 1))  # two global batches of 4
    return x, np.sin(np.cumsum(x, axis=1) * 0.1)


@pytest.mark.parametrize("loop", ["fabric", "trainer"])
def test_two_process_ddp_equals_one_process(loop, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    run = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node=2", os.path.join(ROOT, "tests", "ddp_worker.py"),
            str(tmp_path), loop,
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    net = make_net()
    x, y = make_data()
    with Simulator(net, minibatch_size=4, progress_bar=False) as sim:
        sim.compile(optimizer=torch.optim.Adam(sim.parameters(), lr=LR), loss="mse")
        initial = {k: v.clone() for k, v in sim.module.state_dict().items()}
        for epoch in range(EPOCHS):
            sampler = DistributedSampler(range(len(x)), num_replicas=1, rank=0, seed=0)
            sampler.set_epoch(epoch)
            perm = list(sampler)
            sim.fit({net.a: x[perm]}, {net.p: y[perm]}, shuffle=False, verbose=0)
        single = {k: v.clone() for k, v in sim.module.state_dict().items()}
        for rank in (0, 1):
            sim.load_params(tmp_path / f"rank{rank}.pt")
            ddp = sim.module.state_dict()
            for name, value in single.items():
                torch.testing.assert_close(ddp[name], value, rtol=0, atol=1e-10)
    # training moved the parameters, so the equality above says something
    assert any(not torch.allclose(single[n], v) for n, v in initial.items())


@pytest.mark.parametrize("fabric", [False, True])
def test_ddp_strategy_keeps_simulation_state_per_process(fabric):
    """sim.fit(strategy="ddp") does not sync buffers (the simulation state)."""
    if fabric:
        from lightning.fabric.strategies import DDPStrategy
    else:
        from lightning.pytorch.strategies import DDPStrategy

    from snntorch_nengo.training.distributed import resolve_strategy

    strategy = resolve_strategy("ddp", fabric=fabric)
    assert isinstance(strategy, DDPStrategy)
    synced = {k: v for k, v in strategy._ddp_kwargs.items() if "buffers" in k}
    assert synced and not any(synced.values()), synced
    assert resolve_strategy("ddp_spawn", fabric=fabric)._start_method == "spawn"
    assert resolve_strategy("auto", fabric=fabric) == "auto"  # others untouched
