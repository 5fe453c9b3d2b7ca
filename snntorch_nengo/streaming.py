"""Long runs: simulate in chunks, keep memory flat, stream probe data out.

`run_chunked` is what ``Simulator.run_steps`` does with ``chunk_steps`` or a
``probe_callback``; `ProbeStream` is a ready-made callback that writes each
chunk to ``.npy`` files. See docs/robustness.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from nengo.exceptions import ValidationError
from nengo.utils.progress import NoProgressBar, Progress, ProgressTracker

from .utils import to_numpy

if TYPE_CHECKING:
    import nengo

# steps per engine call when chunking is on but no chunk size was given: the
# engine keeps every sample of a call until it returns, so this bounds memory
DEFAULT_CHUNK_STEPS = 1000


def run_chunked(
    sim: Any,
    steps: int,
    data: Any = None,
    progress_bar: bool | Any | None = None,
    chunk_steps: int | None = None,
    probe_callback: Callable | None = None,
) -> None:
    """Advance ``sim`` by ``steps`` steps, ``chunk_steps`` at a time.

    Probe data of each chunk goes to ``probe_callback(data, n_steps)`` if given
    (``data`` shaped as ``sim.data`` would hold that chunk, ``n_steps`` the
    simulator's step count at the chunk's end) and then is dropped; otherwise it
    is appended to ``sim.data``, or with ``keep_history=False`` only the last
    sample is kept. Chunking off (one engine call) is the default when neither
    applies, and results do not depend on the chunk size.
    """
    module = sim.module
    keep_history = module.settings["keep_history"] is not False
    if chunk_steps is None:
        whole = keep_history and probe_callback is None
        chunk_steps = max(steps, 1) if whole else DEFAULT_CHUNK_STEPS
    if probe_callback is not None and not callable(probe_callback):
        raise ValidationError(
            f"must be callable as probe_callback(data, n_steps), got {probe_callback!r}",
            attr="probe_callback",
        )
    if int(chunk_steps) != chunk_steps or chunk_steps < 1:
        raise ValidationError(
            f"chunk_steps must be a positive integer, got {chunk_steps!r}",
            attr="chunk_steps",
        )
    chunk_steps = int(chunk_steps)
    feeds = None
    if data:
        # validate the whole run's inputs up front: a chunk's slice would hide
        # inputs that are too long
        feeds, _, _ = module.prepare_inputs(data, steps)
    if progress_bar is None:
        progress_bar = sim.progress_bar
    batched = sim.minibatch_size is not None
    last = {}
    with ProgressTracker(
        progress_bar, Progress("Simulating", "Simulation", steps)
    ) as pt, torch.no_grad():
        # a callback per step only where a bar shows it: the in-place strategy
        # runs steps in chunks between callbacks, one chunk without them
        shown = not isinstance(pt.progress_bar, NoProgressBar)
        on_step = pt.total_progress.step if shown else None
        for start in range(0, steps, chunk_steps):
            n = min(chunk_steps, steps - start)
            chunk_feeds = (
                None if feeds is None else {k: v[:, start : start + n] for k, v in feeds.items()}
            )
            out = module(inputs=chunk_feeds, n_steps=n, on_step=on_step)
            arrays = {probe: to_numpy(value) for probe, value in out.items()}
            if probe_callback is not None:
                probe_callback(
                    arrays if batched else {p: a[0] for p, a in arrays.items()},
                    module.n_steps,
                )
            elif keep_history:
                for probe, value in arrays.items():
                    sim._sim_data[probe].append(value)
            else:
                last.update({p: a for p, a in arrays.items() if a.shape[1] > 0})
    if probe_callback is None and not keep_history:
        # keep_history=False: sim.data holds the latest sample only, so memory
        # stays flat however many runs and steps there are
        for probe, value in last.items():
            sim._sim_data[probe] = [value[:, -1:]]
    sim.data.reset()


class ProbeStream:
    """Write probe data to ``.npy`` files, one per chunk, as a simulation runs.

    Pass it as ``probe_callback`` to ``sim.run``/``sim.run_steps``::

        stream = ProbeStream("out/run1")
        sim.run(1000.0, probe_callback=stream, chunk_steps=10000)
        voltage = stream.load(probe, mmap=False)   # all chunks joined in time

    Each probe gets a folder named after its label (``probe_<i>`` for the i-th
    probe without one); chunk files are ``000000.npy``, ``000001.npy``, ...
    shaped as ``sim.data[probe]`` would be for that chunk. ``probes`` restricts
    what is written.
    """

    def __init__(
        self, folder: str | os.PathLike, probes: Iterable[nengo.Probe] | None = None
    ) -> None:
        self.folder = os.fspath(folder)
        self.probes = None if probes is None else list(probes)
        self.names = {}
        self.counts = {}
        self.n_steps = None

    def __call__(self, data, n_steps):
        if not self.names:
            # numbered among all the run's probes, so names do not depend on `probes`
            self._name(list(data))
            if self.probes is not None:
                self.names = {p: n for p, n in self.names.items() if p in self.probes}
        for probe, value in data.items():
            if probe not in self.names:
                continue
            folder = os.path.join(self.folder, self.names[probe])
            os.makedirs(folder, exist_ok=True)
            index = self.counts.get(probe, 0)
            np.save(os.path.join(folder, f"{index:06d}.npy"), value)
            self.counts[probe] = index + 1
        self.n_steps = n_steps

    def _name(self, probes):
        unnamed = 0
        for probe in probes:
            if probe.label is not None:
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(probe.label))
            else:
                name, unnamed = f"probe_{unnamed}", unnamed + 1
            while name in self.names.values():
                name += "_"
            self.names[probe] = name

    def files(self, probe: nengo.Probe | str) -> list[str]:
        """The chunk files written for ``probe`` (a Probe or its folder name), in order."""
        name = self.names.get(probe, probe)
        if name not in self.names.values():
            raise ValidationError(
                f"{probe} was not streamed; streamed: {sorted(self.names.values())}",
                attr="probe",
            )
        folder = os.path.join(self.folder, name)
        return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]

    def load(self, probe: nengo.Probe | str, mmap: bool = False) -> np.ndarray:
        """All of ``probe``'s chunks joined along time, as ``sim.data`` would hold them.

        With ``mmap=True`` each chunk is memory-mapped before joining (the join
        itself still makes one array); iterate `files` to stay out of memory.
        """
        chunks = [np.load(f, mmap_mode="r" if mmap else None) for f in self.files(probe)]
        if not chunks:
            raise ValidationError(f"no data was written for {probe}", attr="probe")
        return np.concatenate(chunks, axis=-2)
