"""examples/spiking_cnn_digits.py: a torch CNN converted to a spiking network."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_spiking_cnn_digits(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "spiking_cnn_digits.py"),
         str(tmp_path), "--quick"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
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
