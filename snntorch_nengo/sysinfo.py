"""What runs on this machine: versions, kernels, run strategies (`info`).

``snntorch_nengo.info()`` prints it; ``python -m snntorch_nengo`` too, and
``python -m snntorch_nengo --build`` first builds the C++ kernels into the
cache (`snntorch_nengo.kernels.jit`) if they are not there.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from collections.abc import Sequence
from typing import Optional, TextIO

import torch

from . import heap
from .engine.program import _native as _native_program
from .engine.strategies import in_place
from .kernels import cpp, jit, ops
from .version import version


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    """The facts `info` prints, as a dict."""
    facts = {
        "snntorch_nengo": version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": {
            name: _version(name)
            for name in ("torch", "nengo", "numpy", "lightning", "triton")
        },
        "torch_threads": torch.get_num_threads(),
    }
    facts["versions"]["torch"] = torch.__version__

    if cpp.AVAILABLE:
        kind = {"prebuilt": "prebuilt", "jit": "built just in time"}[cpp.SOURCE]
        facts["cpp"] = {
            "active": True, "source": cpp.SOURCE, "path": cpp.PATH,
            "isa": cpp.kernel_isa(), "backward": cpp.HAS_BACKWARD,
            "summary": f"active, {kind} ({cpp.kernel_isa()}"
            f"{', with backward kernels' if cpp.HAS_BACKWARD else ', forward only: rebuild'}"
            f"): {cpp.PATH}"
            + (f" (not the prebuilt one: {cpp.PREBUILT_ERROR})" if cpp.SOURCE == "jit" else ""),
        }
    else:
        facts["cpp"] = {
            "active": False, "source": None, "path": None, "error": cpp.IMPORT_ERROR,
            "summary": f"none, the torch reference runs instead ({cpp.IMPORT_ERROR})",
        }
    try:
        cache = str(jit.cache_dir())
    except Exception as e:  # noqa: BLE001 (no sources shipped)
        cache = f"none ({e})"
    facts["jit"] = {"enabled": jit.enabled(), "cache_dir": cache}

    triton_fns = ops.triton_functions()
    cuda = torch.cuda.is_available()
    facts["triton"] = {
        "importable": triton_fns is not None,
        "summary": (
            "not importable" if triton_fns is None
            else "importable, runs on CUDA tensors" if cuda
            else "importable (no CUDA device: only its CPU interpreter, for tests)"
        ),
    }
    facts["cuda"] = {
        "available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda else [],
        "torch_cuda": torch.version.cuda,
    }

    devices = [d for d in in_place.DEVICES if d == "cpu" or (d == "cuda" and cuda)]
    loop = "the C++ loop" if _native_program is not None else "the Python loop (no C++ kernels)"
    cpu_kernels = ops.backend(torch.zeros(1))
    facts["strategies"] = {
        "windowed": f"on (each operator once over a window; neuron kernels on cpu: {cpu_kernels}"
        + (f", on cuda: {ops.backend(torch.zeros(1, device='cuda'))}" if cuda else "") + ")",
        "in_place": f"on for {', '.join(devices)} (instructions run by {loop})",
        "compiled": "with torch_compile=True ("
        + ("a C++ compiler is there for inductor" if _compiler() else "no C++ compiler found: "
           "torch.compile will fail on the CPU") + ")",
        "functional": "always (autograd records, single steps)",
    }
    facts["heap"] = heap.status()
    return facts


def _compiler() -> Optional[str]:
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which(
        "clang++")


def info(file: Optional[TextIO] = None) -> None:
    """Print the versions, which kernels (C++ prebuilt/JIT/none, Triton, CUDA)
    and run strategies are active here, and the kernel cache folder."""
    f = collect()
    out = file or sys.stdout
    v = f["versions"]
    lines = [
        f"snntorch_nengo {f['snntorch_nengo']} (python {f['python']}, {f['machine']})",
        "  " + ", ".join(f"{name} {v[name] or 'not installed'}" for name in v),
        f"  torch threads: {f['torch_threads']}",
        f"C++ kernels: {f['cpp']['summary']}",
        f"  just-in-time build: {'on' if f['jit']['enabled'] else 'off'}"
        f" ({jit.ENV_JIT}=0 turns it off); cache: {f['jit']['cache_dir']}",
        f"Triton kernels: {f['triton']['summary']}",
        "CUDA: " + (
            ", ".join(f["cuda"]["devices"]) + f" (CUDA {f['cuda']['torch_cuda']})"
            if f["cuda"]["available"] else "no device"
        ),
        "Run strategies:",
        *(f"  {name}: {what}" for name, what in f["strategies"].items()),
        f"Heap (large temporaries, heap.py): {f['heap']}",
    ]
    print("\n".join(lines), file=out)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m snntorch_nengo", description="What snntorch_nengo runs on this machine."
    )
    parser.add_argument(
        "--build", action="store_true",
        help="build the C++ kernels into the cache first (if they are not there, "
        f"even with {jit.ENV_JIT}=0; retries a build that failed)",
    )
    args = parser.parse_args(argv)
    if args.build:
        # built, not imported: this process has loaded its extension already
        try:
            path = jit.build(force=True)
        except jit.BuildError as e:
            print(f"snntorch_nengo: the build failed: {e}", file=sys.stderr)
            return 1
        print(f"C++ kernels built: {path}")
        if not cpp.AVAILABLE:
            print("(this process started without them; the next one loads them"
                  + (f", unless {jit.ENV_JIT}=0)" if not jit.enabled() else ")"))
    info()
    return 0
