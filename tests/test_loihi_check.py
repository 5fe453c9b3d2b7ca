"""check_loihi / to_loihi in the main environment (without nengo_loihi).

The emulator runs are in tests/loihi/ (their own virtual environment).
"""

import nengo
import numpy as np
import pytest
import torch
from nengo.exceptions import ValidationError

import snntorch_nengo
from snntorch_nengo.export.loihi import check_loihi, to_loihi

ZERO = {"voltage": nengo.dists.Choice([0])}


def good_net():
    with nengo.Network(seed=1) as net:
        inp = nengo.Node(np.zeros(4), label="inp")
        pre = nengo.Ensemble(50, 1, neuron_type=nengo.SpikingRectifiedLinear(), label="pre")
        a = nengo.Ensemble(40, 1, neuron_type=nengo.LIF(initial_state=ZERO), label="a")
        b = nengo.Ensemble(30, 1, neuron_type=nengo.LIF(initial_state=ZERO), label="b")
        out = nengo.Node(size_in=3, label="out")
        nengo.Connection(inp, pre.neurons, transform=np.ones((50, 4)))
        nengo.Connection(pre.neurons, a.neurons, transform=np.full((40, 50), 0.01))
        nengo.Connection(a.neurons, b.neurons, transform=np.full((30, 40), 0.01))
        nengo.Connection(b.neurons, out, transform=np.ones((3, 30)))
        nengo.Probe(out)
    return net, pre, a, b


def test_good_network_maps():
    net, pre, a, b = good_net()
    report = check_loihi(net)
    assert report.ok, str(report)
    assert report.on_chip[a] and report.on_chip[b]
    # nengo_loihi is not installed here: the documented limits are used
    assert "documented" in report.limits["source"]
    assert not report.issues_for(a) and not report.issues_for(b)


def test_rate_and_other_neurons_are_errors():
    with nengo.Network() as net:
        sig = nengo.Ensemble(10, 1, neuron_type=nengo.Sigmoid(), label="sig")
        rate = nengo.Ensemble(10, 1, neuron_type=nengo.LIFRate(), label="rate")
        adapt = nengo.Ensemble(10, 1, neuron_type=nengo.AdaptiveLIF(), label="adapt")
        direct = nengo.Ensemble(10, 1, neuron_type=nengo.Direct(), label="direct")
        nengo.Connection(sig, rate)
    report = check_loihi(net)
    assert not report.ok
    errs = {i.obj: i.reason for i in report.errors}
    assert "Sigmoid" in errs[sig]
    assert "rate neuron type LIFRate" in errs[rate] and "LIF" in errs[rate]
    assert "AdaptiveLIF" in errs[adapt]
    assert direct not in errs and not report.on_chip[direct]
    with pytest.raises(ValidationError, match="sig"):
        report.raise_if_errors()


def test_huge_fan_in_is_named():
    with nengo.Network() as net:
        big = nengo.Ensemble(5000, 1, label="big")
        small = nengo.Ensemble(10, 1, label="small")
        conn = nengo.Connection(big.neurons, small.neurons, transform=np.zeros((10, 5000)))
    report = check_loihi(net)
    errs = report.issues_for(small)
    assert any("fan-in too large: 5000 input axons" in i.reason for i in errs), report
    assert any(str(conn) in i.reason for i in errs)
    # 5000 neurons are split across cores (a warning, not an error)
    assert any("split across 5 cores" in i.reason for i in report.issues_for(big))


def test_synapse_memory_splits():
    with nengo.Network() as net:
        a = nengo.Ensemble(200, 1, label="a")
        b = nengo.Ensemble(1024, 1, label="b")
        nengo.Connection(a.neurons, b.neurons, transform=np.ones((1024, 200)) * 1e-3)
    report = check_loihi(net)
    found = [i for i in report.issues_for(b) if "synapse memory" in i.reason]
    # 200 x 1024 weights at 9 bits (8 + chunk headers): 1843200 bits, 2 cores
    assert found and found[0].level == "warning", report
    assert "about 1843200 bits" in found[0].reason
    assert "at least 2 cores" in found[0].reason
    assert report.ok


def test_node_function_between_chip_objects():
    with nengo.Network() as net:
        a = nengo.Ensemble(20, 1, label="a")
        f = nengo.Node(lambda t, x: x**2, size_in=1, label="square")
        b = nengo.Ensemble(20, 1, label="b")
        nengo.Connection(a, f)
        nengo.Connection(f, b)
    report = check_loihi(net)
    mine = report.issues_for(f)
    assert {i.level for i in mine} == {"host", "warning"}
    assert any("its function cannot run on the chip" in i.reason for i in mine)
    assert not report.on_chip[f]


def test_synapses_transforms_learning():
    with nengo.Network() as net:
        a = nengo.Ensemble(20, 1, label="a")
        b = nengo.Ensemble(20, 1, label="b")
        alpha = nengo.Connection(a, b, synapse=nengo.Alpha(0.01))
        bcm = nengo.Connection(
            a.neurons,
            b.neurons,
            transform=np.zeros((20, 20)),
            learning_rule_type=nengo.BCM(),
        )
        conv = nengo.Connection(
            a.neurons,
            b.neurons,
            transform=nengo.Convolution(
                1, (20, 1), kernel_size=(5,), strides=(1,), padding="same"
            ),
        )
        c = nengo.Ensemble(10, 1, noise=nengo.processes.WhiteNoise(), label="noisy")
    report = check_loihi(net)
    reasons = lambda obj: " ".join(i.reason for i in report.issues_for(obj))  # noqa: E731
    assert "synapse Alpha is not supported" in reasons(alpha)
    assert "learning rule BCM" in reasons(bcm)
    assert "1-D convolution" in reasons(conv)
    assert "noise" in reasons(c)
    # the decoded a -> b connection goes through decode neurons
    assert "decode neurons" in reasons(alpha)


def test_weight_precision_and_initial_state():
    w = np.full((10, 10), 1e-4)
    w[0, 0] = 1.0  # one large weight: the small ones vanish at 8 bits
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1, label="a")  # default LIF: random initial voltage
        b = nengo.Ensemble(10, 1, label="b", gain=np.ones(10), bias=np.zeros(10))
        conn = nengo.Connection(a.neurons, b.neurons, transform=w)
    report = check_loihi(net)
    prec = [i for i in report.issues_for(conn) if "8-bit" in i.reason]
    assert prec and "99% of nonzero weights round to zero" in prec[0].reason
    assert any("initial voltage not zero" in i.reason for i in report.issues_for(a))
    ok = check_loihi(net, max_weights_lost=1.0, max_weight_error=1.0)
    assert not [i for i in ok.issues_for(conn) if "8-bit" in i.reason]


def test_tau_ref_rounding():
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1, neuron_type=nengo.LIF(tau_ref=0.0025, initial_state=ZERO))
    report = check_loihi(net)
    assert any("tau_ref=0.0025" in i.reason for i in report.issues_for(a))
    assert not any("tau_ref" in i.reason for i in check_loihi(net, dt=0.0005).issues)


def test_to_loihi_freezes_and_checks():
    net, pre, a, b = good_net()
    with snntorch_nengo.Simulator(net, progress_bar=False) as sim:
        # a "trained" bias: to_loihi must freeze it into the Nengo object
        bias = sim.module.module_of(b).bias
        with torch.no_grad():
            bias += 0.5
        trained = bias.detach().numpy().copy()
        report = check_loihi(sim)  # reads the simulator's current values
        assert report.ok, str(report)
        out = to_loihi(sim)
    assert out is net
    assert np.allclose(b.bias, trained)  # frozen into the Nengo object
    with nengo.Network() as bad:
        nengo.Ensemble(10, 1, neuron_type=nengo.Tanh(), label="tanh")
    with pytest.raises(ValidationError, match="tanh.*Tanh cannot run on Loihi"):
        to_loihi(bad)
    with pytest.warns(UserWarning, match="Tanh"):
        to_loihi(bad, strict=False)


def test_neither_simulator_nor_network_is_named():
    # the exporters know a Simulator by the NengoModule it runs (they sit below
    # the Simulator class); anything else that is not a network is refused
    with pytest.raises(ValidationError, match="Simulator or a nengo.Network.*'dict'"):
        check_loihi({"not": "a network"})
    ens_only = nengo.Ensemble(3, 1, add_to_container=False)
    with pytest.raises(ValidationError, match="type 'Ensemble'"):
        check_loihi(ens_only)
