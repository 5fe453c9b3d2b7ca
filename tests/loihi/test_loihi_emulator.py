"""A network trained and frozen by snntorch_nengo, run in nengo_loihi's emulator.

Runs only in the ``.venv-loihi`` environment (``make test-loihi``): nengo_loihi
1.1.0 needs numpy<2, which the main environment does not have.
"""

import warnings

import nengo
import nengo_loihi
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import snntorch_nengo
from snntorch_nengo.export.loihi import check_loihi, to_loihi
from snntorch_nengo.training.tasks import load_digits

ZERO = {"voltage": nengo.dists.Choice([0])}  # the chip starts neurons at zero
N_TEST = 100
PRESENT = 0.05  # seconds per test digit (50 steps)


def classifier():
    """Input -> 100 LIF -> 100 LIF -> linear readout (both LIF layers on chip)."""
    lif = nengo.LIF(amplitude=0.01, initial_state=ZERO)
    with nengo.Network(seed=0, label="digits") as net:
        net.config[nengo.Ensemble].max_rates = nengo.dists.Choice([100])
        net.config[nengo.Ensemble].intercepts = nengo.dists.Choice([0])
        net.config[nengo.Connection].synapse = None
        net.inp = nengo.Node(np.zeros(64), label="input")
        net.h1 = nengo.Ensemble(100, 1, neuron_type=lif, label="h1")
        net.h2 = nengo.Ensemble(100, 1, neuron_type=lif, label="h2")
        out = nengo.Node(size_in=10, label="logits")
        glorot = snntorch_nengo.dists.Glorot()
        nengo.Connection(net.inp, net.h1.neurons, transform=glorot)
        nengo.Connection(net.h1.neurons, net.h2.neurons, transform=glorot)
        nengo.Connection(net.h2.neurons, out, transform=glorot)
        net.probe = nengo.Probe(out, label="logits")
    return net


def mean_output_loss(prediction, target):
    return F.cross_entropy(prediction.mean(dim=1), target[:, -1, 0].long())


@pytest.fixture(scope="module")
def trained():
    """The classifier trained with rate-swapped LIF (one step per digit), frozen."""
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits(seed=0)
    mb = 32
    n = len(x_train) // mb * mb
    net = classifier()
    with snntorch_nengo.Simulator(
        net, minibatch_size=mb, dtype=torch.float32, progress_bar=False
    ) as sim:
        sim.compile(
            optimizer=torch.optim.Adam(sim.parameters(), 1e-3),
            loss={net.probe: mean_output_loss},
        )
        sim.fit(
            {net.inp: x_train[:n, None]},
            {net.probe: y_train[:n, None, None].astype(np.float32)},
            epochs=15,
            verbose=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the input is spike-encoded: expected
            to_loihi(sim)  # freeze_params + check + nengo_loihi.add_params
    # present the test digits one after the other, as a chip run would
    net.inp.output = nengo.processes.PresentInput(x_test[:N_TEST], PRESENT)
    return net, y_test[:N_TEST]


def classify(out):
    """Class per digit: largest mean output over the second half of its window."""
    steps = int(round(PRESENT / 0.001))
    per_digit = out.reshape(N_TEST, steps, -1)[:, steps // 2 :].mean(axis=1)
    return per_digit.argmax(axis=-1), per_digit


def run(sim_class, net, **kwargs):
    with warnings.catch_warnings():
        # nengo_loihi 1.1.0 warns that it was tested up to nengo 3.2 only
        warnings.simplefilter("ignore")
        with sim_class(net, progress_bar=False, **kwargs) as sim:
            sim.run(N_TEST * PRESENT)
    return sim.data[net.probe]


def test_frozen_classifier_in_loihi_emulator(trained):
    net, y = trained
    report = check_loihi(net, build=True)  # also builds with nengo_loihi
    assert report.ok, str(report)
    assert not [i for i in report.warnings if "bias" in i.reason], str(report)
    assert report.on_chip[net.h1] and report.on_chip[net.h2]
    assert "nengo_loihi 1.1.0" in report.limits["source"]

    ours = run(snntorch_nengo.Simulator, net)
    reference = run(nengo.Simulator, net)
    loihi = run(nengo_loihi.Simulator, net, target="sim")

    # the frozen network is exactly nengo's (same float64 math, step by step)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)

    ours_class, ours_out = classify(ours)
    loihi_class, loihi_out = classify(loihi)
    ours_acc = np.mean(ours_class == y)
    loihi_acc = np.mean(loihi_class == y)
    print(f"spiking accuracy: ours {ours_acc:.2f}, nengo_loihi emulator {loihi_acc:.2f}")
    # Loihi quantizes weights to 8 bits, voltages to integers, and encodes the
    # host input into spikes with on/off neurons; within 5 points on 100 digits
    assert ours_acc >= 0.85
    assert abs(loihi_acc - ours_acc) <= 0.05
    # and the two mostly agree digit by digit, with correlated outputs
    assert np.mean(ours_class == loihi_class) >= 0.85
    assert np.corrcoef(ours_out.ravel(), loihi_out.ravel())[0, 1] >= 0.85


def test_build_errors_name_the_object():
    with nengo.Network() as net:
        inp = nengo.Node([0.5])
        sig = nengo.Ensemble(10, 1, neuron_type=nengo.Sigmoid(), label="sig")
        nengo.Connection(inp, sig)
    report = check_loihi(net, build=True)
    static = [i for i in report.errors if "Sigmoid cannot run" in i.reason]
    built = [i for i in report.errors if "nengo_loihi could not build" in i.reason]
    assert static and static[0].obj is sig
    # nengo_loihi's own builder refuses it too, and names the ensemble
    assert built and built[0].obj is sig and "Sigmoid" in built[0].reason


def test_on_chip_config_moves_to_host():
    net = classifier()
    to_loihi(net, on_chip={net.h1: False}, strict=True)
    assert net.config[net.h1].on_chip is False
    report = check_loihi(net)
    assert not report.on_chip[net.h1] and report.on_chip[net.h2]


def test_static_limits_agree_with_nengo_loihi():
    """The checker's fan-in rule and nengo_loihi's builder refuse the same network."""
    with nengo.Network(seed=0) as net:
        big = nengo.Ensemble(5000, 1, label="big")
        small = nengo.Ensemble(10, 1, label="small")
        nengo.Connection(big.neurons, small.neurons, transform=np.full((10, 5000), 1e-3))
    report = check_loihi(net, build=True)
    static = [i for i in report.issues_for(small) if "fan-in too large" in i.reason]
    built = [i for i in report.errors if "nengo_loihi could not build" in i.reason]
    assert static, str(report)
    assert built and "Input axons (5000) exceeded max (4096)" in built[0].reason
    # the same network with 4000 neurons fits both
    with nengo.Network(seed=0) as net:
        big = nengo.Ensemble(4000, 1, label="big")
        small = nengo.Ensemble(10, 1, label="small")
        nengo.Connection(big.neurons, small.neurons, transform=np.full((10, 4000), 1e-3))
    report = check_loihi(net, build=True)
    assert report.ok, str(report)


def test_vanishing_biases_reported():
    """Large neuron-to-neuron weights set a coarse bias unit on the chip."""
    for scale, lost in ((1e-3, False), (1.0, True)):
        with nengo.Network(seed=0) as net:
            a = nengo.Ensemble(50, 1, label="a")
            b = nengo.Ensemble(
                50, 1, gain=np.ones(50), bias=np.linspace(0.001, 0.01, 50), label="b"
            )
            w = np.random.RandomState(0).randn(50, 50) * scale
            nengo.Connection(a.neurons, b.neurons, transform=w)
        report = check_loihi(net, build=True)
        found = [i for i in report.issues_for(b) if "biases lose precision" in i.reason]
        assert bool(found) == lost, str(report)


def test_synapse_memory_estimate_matches_nengo_loihi():
    with nengo.Network(seed=0) as net:
        a = nengo.Ensemble(200, 1, label="a")
        b = nengo.Ensemble(1024, 1, label="b")
        w = np.random.RandomState(0).rand(1024, 200) * 1e-3
        nengo.Connection(a.neurons, b.neurons, transform=w)
    report = check_loihi(net)
    (found,) = [i for i in report.issues_for(b) if "synapse memory" in i.reason]
    assert "about 1843200 bits" in found.reason and "at least 2 cores" in found.reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with nengo_loihi.Simulator(net, target="sim", progress_bar=False) as sim:
            blocks = sim.model.objs[b]["in"]
            blocks = blocks if isinstance(blocks, list) else [blocks]
            bits = sum(s.bits() for block in blocks for s in block.synapses)
    assert len(blocks) == 2 and bits == 1843200
