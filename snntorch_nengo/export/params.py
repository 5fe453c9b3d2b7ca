"""Saving, loading and freezing trained parameters (``sim.save_params`` ...)."""


class ParamsMixin:
    """`Simulator` methods for parameters; ``self.module`` is the NengoModule."""
