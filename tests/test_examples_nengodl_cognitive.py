"""The NengoDL tutorial twins "Optimizing a cognitive model" (and "...with temporal
dynamics") in quick mode.

Each runs as a script (examples/nengodl/) with NengoDL's call forms and must
reach a real result, not only exit 0.
"""

from test_examples_nengodl import check_plots, number, run_tutorial


def test_spa_retrieval(tmp_path):
    out = run_tutorial("spa_retrieval.py", tmp_path)
    # the untrained network is nengo's, item for item
    assert number(r"largest difference from nengo.Simulator: (\S+)", out) < 1e-6
    before = number(r"Retrieval accuracy before training: (\S+)", out)
    after = number(r"Retrieval accuracy after training: (\S+)", out)
    # 50 test items among 250 vocabulary items (chance 1 in 250): training clearly helps
    assert after >= before + 0.12
    loss_before = number(r"Test loss before training: (\S+)", out)
    loss_after = number(r"Test loss after training: (\S+)", out)
    assert loss_after < 0.6 * loss_before
    # the saved parameters give the trained network's answers in a new simulator
    assert number(r"with loaded parameters: (\S+)", out) == after
    check_plots(tmp_path, "spa_retrieval_before.png", "spa_retrieval_after.png",
                "spa_retrieval_training.png")
