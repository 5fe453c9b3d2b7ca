"""The NengoDL tutorial twins "Optimizing a cognitive model" (and "...with temporal
dynamics") in quick mode.

Each runs as a script (examples/nengodl/) with NengoDL's call forms and must
reach a real result, not only exit 0.
"""

import re

from test_examples_nengodl import check_plots, number, run_tutorial


def test_spa_retrieval(tmp_path):
    out = run_tutorial("spa_retrieval.py", tmp_path)
    # the untrained network is nengo's, item for item
    assert number(r"largest difference from nengo.Simulator: (\S+)", out) < 1e-6
    before = number(r"Retrieval accuracy before training: (\S+)", out)
    after = number(r"Retrieval accuracy after training: (\S+)", out)
    # 50 test items among 250 vocabulary items (chance 1 in 250): training clearly helps
    assert after >= before + 0.12
    # on 4 more sets of 50 items (the untrained network retrieves about 1 in 25
    # of those): the gain is not the luck of one test set
    assert number(r"more test sets of 50 items: mean (\S+),", out) > 0.08
    loss_before = number(r"Test loss before training: (\S+)", out)
    loss_after = number(r"Test loss after training: (\S+)", out)
    assert loss_after < 0.6 * loss_before
    # the saved parameters give the trained network's answers in a new simulator
    assert number(r"with loaded parameters: (\S+)", out) == after
    check_plots(tmp_path, "spa_retrieval_before.png", "spa_retrieval_after.png",
                "spa_retrieval_training.png")


def test_spa_memory(tmp_path):
    out = run_tutorial("spa_memory.py", tmp_path)
    # 1. the memory: the untrained run is nengo's, and training makes it hold
    assert number(r"memory, largest difference from nengo.Simulator: (\S+)", out) < 1e-6
    loss_before = number(r"Memory: test loss before: (\S+)", out)
    loss_after = number(r"Memory: test loss after: (\S+)", out)
    assert loss_after < 0.8 * loss_before
    held = re.search(r"after the delay: (\S+) before, (\S+) after", out)
    assert float(held.group(2)) > float(held.group(1)) + 0.05
    # 2. bind, remember, unbind: the untrained model already answers far above
    # chance (1 in 256 vocabulary items), so its wiring is right; training on
    # three probes with nan_mse and loss_weights lowers the output's test loss
    assert number(r"Retrieval accuracy before training: (\S+)", out) > 0.25
    before = number(r"Retrieval: test loss before: (\S+)", out)
    after = number(r"Retrieval: test loss after: (\S+)", out)
    assert after < before
    number(r"Retrieval accuracy after training: (\S+)", out)
    check_plots(tmp_path, "spa_memory_before.png", "spa_memory_after.png",
                "spa_memory_retrieval_before.png", "spa_memory_retrieval_after.png")
