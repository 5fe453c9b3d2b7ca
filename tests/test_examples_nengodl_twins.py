"""The NengoDL tutorial twins "Integrating a Keras model" and "LMUs" in quick mode.

Each runs as a script (examples/nengodl/) with NengoDL's call forms and must
reach a real result, not only exit 0.
"""

from test_examples_nengodl import check_plots, number, run_tutorial


def test_torch_integration(tmp_path):
    out = run_tutorial("torch_integration.py", tmp_path)
    torch_acc = number(r"torch model test accuracy: (\S+)", out)
    assert torch_acc > 0.8  # chance is 0.1
    # the model inside the network computes what it computes outside
    assert number(r"largest difference from the torch model: (\S+)", out) < 1e-5
    assert number(r"Layer accuracy \(sim.predict\): (\S+)", out) == torch_acc
    # spiking neurons reading the output lose little on the way
    assert number(r"spiking readout accuracy: (\S+)", out) > torch_acc - 0.05
    # the readout's synapses (5 ms, then 20 ms on the probe) set how fast it rises
    assert 20 < number(r"rise time \(to 90%\): (\S+) ms", out) < 100
    check_plots(tmp_path, "torch_integration_over_time.png",
                "torch_integration_latency.png")


def test_lmu(tmp_path):
    out = run_tutorial("lmu.py", tmp_path)
    # the cell's memory is the LMU's linear recurrence, step for step
    assert number(r"memory, largest difference from the recurrence: (\S+)", out) < 1e-5
    initial = number(r"Initial test accuracy: (\S+)%", out)
    final = number(r"Final test accuracy: (\S+)%", out)
    assert final > 50 and final > initial + 30  # chance is 10%
    assert number(r"with loaded parameters: (\S+)%", out) == final
    # fit's validation figure is evaluate's on the same data (no pooling)
    assert number(r"last epoch's validation accuracy: (\S+)%", out) == final
    # keep_history=False: one step out, and predict agrees with evaluate
    assert "predict output: (300, 1, 10)" in out
    assert number(r"predict accuracy: (\S+)%", out) == final
    check_plots(tmp_path, "lmu_digits.png", "lmu_sequences.png", "lmu_training.png")
