"""The operators this engine adds to Nengo's.

Both are ordinary `nengo.builder.Operator` subclasses, so Nengo's dependency
graph, merger and optimiser handle them; only `snntorch_nengo` runs them
(`engine/ops/`), and Nengo's reference simulator refuses them clearly.

- `NodeInput` takes the place of an input Node's output operator so that fed
  data can replace it (`engine/schedule.py` puts it in);
- `SimTensorNode` calls a `.TensorNode`'s torch function (`tensor_node.py`
  builds it; `engine/ops/tensor_node.py` steps it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from nengo.builder.operator import Operator
from nengo.exceptions import SimulationError

if TYPE_CHECKING:
    import nengo
    import numpy as np
    from nengo.builder.signal import Signal

NOT_SIMULATED = (
    "TensorNodes can only be simulated by snntorch_nengo.Simulator (or "
    "snntorch_nengo.NengoModule), not by {simulator}"
)


class NodeInput(Operator):
    """Sets an input Node's output: from fed data when given, else as Nengo would.

    It takes the place of the node's own operator (a `SimPyFunc` or a
    `SimProcess`), or of nothing for a constant node, so user data can replace
    any input node's output, as in NengoDL's ``predict(x=...)``.
    """

    def __init__(
        self, node: nengo.Node, output: Signal, original: Operator | None = None
    ) -> None:
        super().__init__(tag=f"NodeInput {node}")
        self.node = node
        self.original = original
        self.sets = [output]
        self.incs = []
        self.reads = [] if original is None else list(original.reads)
        self.updates = [] if original is None else list(original.updates)

    @property
    def output(self) -> Signal:
        return self.sets[0]

    def make_step(
        self, signals: object, dt: float, rng: np.random.RandomState
    ) -> NoReturn:  # pragma: no cover - numpy path unused
        raise NotImplementedError("NodeInput runs only in snntorch_nengo")


class SimTensorNode(Operator):
    """Set ``output`` to ``node.tensor_func(time, input)``.

    1. sets ``[output]``
    2. incs ``[]``
    3. reads ``[time] if time is not None else [] + [input] if input is not None``
    4. updates ``[]``

    Only `snntorch_nengo` runs it (``engine/ops/tensor_node.py``); Nengo's
    reference simulator raises a `~nengo.exceptions.SimulationError`.
    """

    def __init__(
        self,
        node: nengo.Node,
        time: Signal | None,
        input: Signal | None,
        output: Signal,
        tag: str | None = None,
    ) -> None:  # noqa: A002
        super().__init__(tag=tag if tag is not None else f"SimTensorNode {node}")
        self.node = node
        self.sets = [output]
        self.incs = []
        self.reads = [sig for sig in (time, input) if sig is not None]
        self.updates = []
        # positions in `reads`: Nengo's operator merger may replace the signals
        self._time_index = None if time is None else 0
        self._input_index = None if input is None else len(self.reads) - 1

    @property
    def time(self) -> Signal | None:
        return None if self._time_index is None else self.reads[self._time_index]

    @property
    def input(self) -> Signal | None:
        return None if self._input_index is None else self.reads[self._input_index]

    @property
    def output(self) -> Signal:
        return self.sets[0]

    def _descstr(self):
        return f"{self.node}"

    def make_step(self, signals: object, dt: float, rng: np.random.RandomState) -> NoReturn:
        raise SimulationError(
            NOT_SIMULATED.format(simulator="nengo.Simulator") + f" ({self.node})"
        )
