"""Lightning checkpoints of a NengoLightningModule: parameters and simulation state.

Resuming a fit from a checkpoint continues to the same parameters as a run that
was never interrupted (deterministic setup: no shuffling, one build seed).
"""

import lightning as L
import nengo
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from nengo.exceptions import ValidationError
from torch.utils.data import DataLoader, TensorDataset

from snntorch_nengo import NengoLightningModule, Simulator
from snntorch_nengo.persistence import state_tensors
from snntorch_nengo.training.checkpoint import KEY

from networks import relu_channel


def data():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (8, 10, 1))
    return x, np.sin(np.cumsum(x, axis=1) * 0.1)


def fit(epochs, ckpt_dir=None, ckpt_path=None, edit=None):
    """Train a fresh simulator; return its parameters."""
    net = relu_channel()
    x, y = data()
    with Simulator(net, minibatch_size=4, progress_bar=False) as sim:
        sim.compile(optimizer="adam", loss="mse")
        callbacks = None
        if ckpt_dir is not None:
            callbacks = [ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0)]
        if edit is not None:
            ckpt_path = edit(ckpt_path)
        sim.fit(
            {net.a: x}, {net.p: y}, epochs=epochs, shuffle=False, verbose=0,
            stateful=True,  # the state carries across batches and epochs
            callbacks=callbacks, ckpt_path=ckpt_path,
        )
        return {k: v.clone() for k, v in sim.module.state_dict().items()}


# Lightning's advice to pass the ModelCheckpoint again on resume does not apply
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resumed_fit_equals_uninterrupted(tmp_path):
    uninterrupted = fit(4)
    fit(2, ckpt_dir=tmp_path)
    ckpt = tmp_path / "last.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["snntorch_nengo"]["n_steps"] == 2 * 2 * 10  # 2 epochs, 2 batches
    assert any(k.startswith("module.ensembles") for k in saved["state_dict"])
    resumed = fit(4, ckpt_path=ckpt)
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-12)

    # without the simulation state the resumed run drifts: the state matters
    def strip(path):
        checkpoint = torch.load(path, weights_only=False)
        del checkpoint[KEY]
        stripped = tmp_path / "stripped.ckpt"
        torch.save(checkpoint, stripped)
        return stripped

    drifted = fit(4, ckpt_path=ckpt, edit=strip)
    assert any(
        not torch.allclose(drifted[n], v, rtol=0, atol=1e-9) for n, v in uninterrupted.items()
    )


def test_checkpoint_holds_simulation_state(tmp_path):
    """A Trainer's checkpoint restores parameters and state into a new module."""
    net = relu_channel()
    x, y = data()
    loader = DataLoader(
        TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), batch_size=4
    )
    lm = NengoLightningModule(net, loss="mse", stateful=True, dtype=torch.float64)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(lm, loader)
    path = tmp_path / "manual.ckpt"
    trainer.save_checkpoint(path)

    restored = NengoLightningModule.load_from_checkpoint(
        path, network=relu_channel(), loss="mse", stateful=True, dtype=torch.float64,
    )
    assert restored.module.n_steps == lm.module.n_steps == 20
    live = state_tensors(lm.module)
    for name, (_, value) in state_tensors(restored.module).items():
        torch.testing.assert_close(value, live[name][1], rtol=0, atol=0)
    for name, value in lm.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[name], value, rtol=0, atol=1e-12)

    # a checkpoint of another network is refused with the names of the tensors
    with nengo.Network(seed=1) as other:
        a = nengo.Node([0.0], label="a")
        ens = nengo.Ensemble(20, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(a, ens, synapse=None)
        nengo.Probe(ens, synapse=None, label="out")  # no synapse: no synapse state
    lm_other = NengoLightningModule(other, loss="mse", dtype=torch.float64)
    with pytest.raises(ValidationError, match="state does not match this network"):
        lm_other.on_load_checkpoint(torch.load(path, weights_only=False))
