"""One process of the two-process DDP test (tests/test_distributed.py).

Started by torchrun; trains with ``strategy="ddp"`` on the CPU (gloo) in the
loop named by the second argument (``fabric``, the default, or ``trainer``) and
saves its parameters as ``<out>/rank<RANK>.pt``.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_distributed import EPOCHS, LR, make_data, make_net  # noqa: E402

from snntorch_nengo import Simulator  # noqa: E402


def main(out, loop):
    net = make_net()
    x, y = make_data()
    world = int(os.environ["WORLD_SIZE"])
    # each process simulates its share of the global batch
    with Simulator(net, minibatch_size=len(x) // 2 // world, progress_bar=False) as sim:
        sim.compile(optimizer=torch.optim.Adam(sim.parameters(), lr=LR), loss="mse")
        history = sim.fit(
            {net.a: x}, {net.p: y}, epochs=EPOCHS, shuffle=False, verbose=0,
            strategy="ddp", accelerator="cpu", devices=world, num_nodes=1,
            loop=loop,
        )
        assert history.loop == loop, history.loop
        sim.save_params(os.path.join(out, f"rank{os.environ['RANK']}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "fabric")
