"""The neuron spec table (`snntorch_nengo.neurons.specs`) and what is generated from it."""

import os
import subprocess
import sys

import nengo
import pytest

from snntorch_nengo.kernels import cpp, ops, reference
from snntorch_nengo.neurons import neuron_step
from snntorch_nengo.neurons.specs import KERNEL_SPECS, SPECS, cpp_header, kernel_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_checked_in_header_matches_the_table():
    with open(os.path.join(ROOT, "csrc", "neuron_specs.h")) as f:
        checked_in = f.read()
    assert checked_in == cpp_header(), (
        "csrc/neuron_specs.h is stale: regenerate it with "
        "`python -m snntorch_nengo.neurons --header > csrc/neuron_specs.h`"
    )


def test_header_command_prints_the_header():
    out = subprocess.run(
        [sys.executable, "-m", "snntorch_nengo.neurons", "--header"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert out.stdout == cpp_header()


@pytest.mark.parametrize("cls", list(SPECS), ids=lambda c: c.__name__)
def test_spec_matches_the_nengo_type(cls):
    spec = SPECS[cls]
    if spec.rates_to_spikes:
        neuron_type = cls(nengo.LIFRate())
    else:
        neuron_type = cls()
    # states: Nengo's own names (the spec orders them for the kernels)
    assert set(spec.states) == set(neuron_type.state)
    assert len(spec.param_values(neuron_type)) == len(spec.params)
    assert neuron_step(neuron_type) is spec.step
    if spec.surrogate is not None or spec.rate is not None:
        assert neuron_type.spiking


@pytest.mark.parametrize("spec", KERNEL_SPECS, ids=lambda s: s.kernel.name)
def test_kernel_arguments_come_from_the_spec(spec):
    args = ("J",) + spec.states + ("filtered", "dt") + spec.params + ("decay",)
    assert spec.kernel_args(backward=False) == args
    for fn in (reference.KERNELS[spec.kernel.name], cpp.KERNELS[spec.kernel.name]):
        assert tuple(
            p for p in fn.__signature__.parameters if p not in ("surrogate", "surrogate_param")
        ) == args
    schema = ops.OPS[spec.kernel.name]._opoverload._schema
    assert tuple(a.name for a in schema.arguments)[: len(args)] == args
    assert kernel_spec(spec.nengo_type()) is spec


def test_kernels_only_for_the_exact_classes():
    class MyLIF(nengo.LIF):
        pass

    assert kernel_spec(MyLIF()) is None
    assert kernel_spec(nengo.LIFRate()) is None
    assert [s.kernel.kind for s in KERNEL_SPECS] == list(range(len(KERNEL_SPECS)))
