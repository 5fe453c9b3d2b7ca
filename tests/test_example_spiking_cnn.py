"""examples/spiking_cnn_digits.py: a torch CNN converted to a spiking network."""

import re

from test_examples import run_example


def test_spiking_cnn_digits(tmp_path):
    out = run_example("spiking_cnn_digits.py", tmp_path)
    assert "converted rate network matches torch (verify): True" in out

    def accuracy(pattern):
        match = re.search(pattern + r": accuracy[^0-9]*([0-9.]+)", out)
        assert match, (pattern, out)
        return float(match.group(1))

    # the converted rate network classifies exactly as torch does
    assert accuracy(r"converted, rate neurons") == accuracy(r"torch \(non-spiking\)")
    # spiking neurons, 100 steps per held-out digit, synapses, rate scaling
    assert accuracy(r"\nspiking, synapse=0.005, scale_firing_rates=60") >= 0.9
    assert accuracy(r"rate-regularised, spiking, synapse=0.005, "
                    r"scale_firing_rates=60") >= 0.9
    # regularisation raised the firing rates
    rates = dict(re.findall(r"(plain|regularised): mean firing rate ([0-9.]+) Hz", out))
    assert float(rates["regularised"]) > 1.5 * float(rates["plain"])
    for png in ("spiking_cnn_accuracy.png", "spiking_cnn_rates.png",
                "spiking_cnn_sample.png"):
        assert (tmp_path / png).stat().st_size > 10_000, png
