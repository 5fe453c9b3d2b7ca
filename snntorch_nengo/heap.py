"""glibc's heap, warmed once per process so that large temporaries reuse memory.

A window (`engine.window`) allocates its big intermediates anew each run: a
spiking MLP at batch 100 over 25 steps makes five 2.5 MB tensors per window.
glibc serves blocks above its *mmap threshold* (128 KiB at the start) with
fresh pages from the OS and gives them back on free, so every window pays a
page fault per 4 KiB page touched (about a third of the spiking-inference
benchmark's time, docs/benchmarks.md). glibc raises that threshold by itself
once the program frees a large block (up to 32 MiB on 64-bit systems, and
keeps up to twice that of freed memory on its heap rather than trimming it),
which is why a process that had run a large model before ran a small one up to
three times faster.

`warm` frees one such block on purpose, when the first engine is built, so
that every process starts in the state glibc's own policy reaches after its
first large temporary; nothing else about allocation changes (no `mallopt`,
which would turn glibc's adaptive thresholds off). ``SNNTORCH_NENGO_WARM_HEAP=0``
leaves the heap alone. Other C libraries (and other systems) are not touched.
"""

from __future__ import annotations

import os
import platform

import torch

#: the block freed: under glibc's largest adaptive threshold (32 MiB on 64-bit)
BLOCK_BYTES = 30 << 20
ENV = "SNNTORCH_NENGO_WARM_HEAP"

_state: str | None = None  # what `warm` did, once it ran


def warm() -> str:
    """Warm the heap once per process; returns what was done (`status`)."""
    global _state
    if _state is None:
        if os.environ.get(ENV, "1") == "0":
            _state = f"left alone ({ENV}=0)"
        elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            _state = "left alone (not glibc)"
        else:
            block = torch.empty(BLOCK_BYTES, dtype=torch.uint8)
            del block
            _state = f"warmed: blocks up to {BLOCK_BYTES >> 20} MiB reuse freed memory"
    return _state


def status() -> str:
    """What `warm` did in this process, or that no engine was built yet."""
    return _state or f"not yet warmed (the first engine warms it; {ENV}=0 turns it off)"
