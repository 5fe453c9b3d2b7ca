"""SimNeurons: a neuron type's update, as a pure torch function of (J, state).

In training mode (``sv.training``) spiking types run their training step
instead (rate counterpart or surrogate gradient; see
`snntorch_nengo.neurons.train_mode`), chosen from the network's settings.
"""

from nengo.builder.neurons import SimNeurons

from ...neurons import neuron_step, training_step
from . import OpRegistry


@OpRegistry.register(SimNeurons)
def make_sim_neurons(op, ctx):
    neuron_type = op.neurons
    update = neuron_step(neuron_type)
    train_update = training_step(neuron_type, ctx.settings)
    rng = op.state_extra.get("rng")
    state_sigs = op.state
    dt = ctx.dt

    def step_sim_neurons(sv):
        J = sv.read(op.J)
        state = {name: sv.read(sig) for name, sig in state_sigs.items()}
        step = train_update if sv.training else update
        output, state = step(neuron_type, dt, J, state, rng)
        sv.set(op.output, output)
        for name, sig in state_sigs.items():
            sv.set(sig, state[name])

    return step_sim_neurons
