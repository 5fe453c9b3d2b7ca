"""Every example runs (quickly, on small data) and saves its plots."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_example(name, tmp_path, *extra):
    """Run ``examples/<name>`` as a script, quick, plots into ``tmp_path``; its stdout."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), str(tmp_path), "--quick", *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_coming_from_torch(tmp_path):
    out = run_example("coming_from_torch.py", tmp_path)
    assert "snntorch_nengo predict output: (50, 1, 784)" in out
    assert "[ 0.51  -0.09 ]" in out  # the TensorNode cell's t + x
    for png in (
        "rate_vs_spiking.png",
        "filtered_spikes.png",
        "autoencoder_reconstruction.png",
        "nef_sin_x2.png",
        "nef_sin_x2_reference.png",
    ):
        assert (tmp_path / png).stat().st_size > 10_000, png


def test_spiking_digits(tmp_path):
    out = run_example("spiking_digits.py", tmp_path)
    accuracies = {
        line.split(":")[0]: float(line.split("accuracy ")[1].split()[0])
        for line in out.splitlines()
        if "spiking test accuracy" in line
    }
    assert set(accuracies) == {"rate swap", "surrogate"}
    assert all(acc >= 0.9 for acc in accuracies.values()), accuracies
    assert (tmp_path / "spiking_digits.png").stat().st_size > 10_000
