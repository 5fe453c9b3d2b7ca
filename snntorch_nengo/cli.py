"""``snntorch-nengo``: Lightning's CLI for NengoLightningModules.

    snntorch-nengo fit --config configs/autoencoder.yaml
    snntorch-nengo test --config configs/spiking_digits.yaml

Any `NengoLightningModule` subclass and `LightningDataModule` can be named in the
config's ``model`` and ``data`` sections (``class_path`` and ``init_args``).
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningCLI

from .training.lightning import NengoLightningModule


def main(args: list[str] | None = None) -> int:
    """Run the CLI (``args`` as a list, else ``sys.argv``); 0 once it has run.

    The console script calls ``sys.exit(main())``: anything but 0 or None there
    is an exit status of 1, so the CLI object is not returned (`cli` returns it).
    """
    cli(args)
    return 0


def cli(args: list[str] | None = None) -> LightningCLI:
    """Run the CLI and return the `LightningCLI` (its ``trainer``, ``model``)."""
    return LightningCLI(
        NengoLightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
