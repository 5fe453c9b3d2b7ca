"""NengoDL's Keras-style training API on `Simulator`: compile, fit, evaluate."""


class TrainingMixin:
    """`Simulator` methods for training; ``self.module`` is the NengoModule."""
