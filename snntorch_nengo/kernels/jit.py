"""The C++ kernels built just in time, when no prebuilt ``snntorch_nengo._C`` loads.

A plain ``pip install`` builds in an isolated environment, where the extension
may not have been compiled (no torch there, or no compiler); the package then
builds it on first use from the sources it ships (``snntorch_nengo/_csrc``, or
``csrc/`` of a source checkout), with the recipe of
`snntorch_nengo.kernels.extension`, into a cache folder, and loads it from
there ever after.

- The cache folder is ``$SNNTORCH_NENGO_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/snntorch_nengo`` (``~/.cache/snntorch_nengo``); each build
  gets a folder named by torch's version, its C++ ABI, the machine, the Python
  ABI and a hash of the sources and recipe (`cache_key`), so a new torch or
  changed sources build anew, and nothing else does.
- A file lock (``<folder>.lock``) makes processes that start together
  (pytest-xdist workers, DDP ranks) build once: the others wait and load it.
- The build runs in a subprocess, its compiler output in ``build.log``; a
  failed build leaves ``<folder>.failed`` (that log), so later processes don't
  retry it: delete it, or run ``python -m snntorch_nengo --build``.
- A prebuilt module built from other sources than the package's
  (`check_prebuilt`: an editable install whose C++ sources changed since) is
  not loaded; the current sources are built here instead.
- ``SNNTORCH_NENGO_JIT=0`` turns the build off (and loads even such a module).

When neither a prebuilt nor a just-in-time extension loads, `warn_missing`
warns once per process, naming the fix.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
import warnings
from types import ModuleType
from typing import Callable, Iterator, Optional, Union

from snntorch_nengo.kernels import extension

ENV_JIT = "SNNTORCH_NENGO_JIT"
ENV_CACHE = "SNNTORCH_NENGO_CACHE_DIR"
#: how long a process waits for another's build before giving up (seconds)
LOCK_TIMEOUT = 1800.0
PROGRESS = "building snntorch_nengo C++ kernels (first use, ~1 min)..."

_PACKAGE = pathlib.Path(__file__).resolve().parent.parent


class KernelsWarning(UserWarning):
    """The C++ kernels are not loaded: the package runs its (slower) torch kernels."""


class BuildError(RuntimeError):
    """The just-in-time build failed (the message says why and where its log is).

    ``lasting``: whether a retry would fail the same way (not for a compiler
    killed by a signal: out of memory, interrupted).
    """

    def __init__(self, message: str, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


def enabled() -> bool:
    """Whether the just-in-time build may run (``SNNTORCH_NENGO_JIT`` is not 0)."""
    return os.environ.get(ENV_JIT, "1").strip().lower() not in ("0", "false", "no", "off")


def find_sources() -> Optional[pathlib.Path]:
    """The folder of the C++ sources: the package's ``_csrc`` (an installed
    package) or the source checkout's ``csrc`` (an editable install); None if
    neither has a ``sources.txt``."""
    for folder in (_PACKAGE / "_csrc", _PACKAGE.parent / "csrc"):
        if (folder / extension.SOURCE_LIST).is_file():
            return folder
    return None


def cache_root() -> pathlib.Path:
    if os.environ.get(ENV_CACHE):
        return pathlib.Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return pathlib.Path(base).expanduser() / "snntorch_nengo"


def cache_key(csrc: Union[str, os.PathLike]) -> str:
    """The name of the build folder of the sources in ``csrc`` with this torch."""
    import torch

    abi = int(bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", False)))
    return (
        f"torch{torch.__version__}-cxx11abi{abi}-{platform.machine().lower()}"
        f"-{sys.implementation.cache_tag}-{extension.source_hash(csrc)[:16]}"
    )


def cache_dir(csrc: Union[str, os.PathLike, None] = None) -> pathlib.Path:
    """The build folder of the sources in ``csrc`` (the package's by default)."""
    csrc = csrc or find_sources()
    if csrc is None:
        raise BuildError("the package ships no C++ sources (no _csrc/sources.txt)")
    return cache_root() / "cpp" / cache_key(csrc)


def module_file(folder: Union[str, os.PathLike]) -> pathlib.Path:
    """Where the built module lies in a build folder."""
    return pathlib.Path(folder) / ("_C" + importlib.machinery.EXTENSION_SUFFIXES[0])


@contextlib.contextmanager
def locked(
    path: Union[str, os.PathLike],
    timeout: float = LOCK_TIMEOUT,
    on_wait: Optional[Callable[[], None]] = None,
) -> Iterator[None]:
    """Hold the file lock at ``path`` (waiting at most ``timeout`` seconds;
    ``on_wait()`` is called first if another process holds it)."""
    from filelock import FileLock, Timeout  # a dependency of torch

    lock = FileLock(str(path))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait is not None:
                on_wait()
            lock.acquire(timeout=timeout)
    except Timeout:
        raise BuildError(
            f"another process has held {path} for {timeout:.0f} s (a build that hangs?); "
            "delete the lock file if no build is running"
        ) from None
    try:
        yield
    finally:
        lock.release()


def compile_into(csrc: Union[str, os.PathLike], staging: pathlib.Path) -> pathlib.Path:
    """Build the extension from ``csrc`` in a subprocess into ``staging``
    (its output in ``staging/build.log``); the built module's path."""
    log, result = staging / "build.log", staging / "built.txt"
    with open(log, "w", encoding="utf-8") as out:
        # the recipe loaded by path, from a neutral folder: neither the
        # kernels folder nor the user's cwd shadows modules torch imports
        proc = subprocess.run(
            [sys.executable, "-c", _BUILD_SCRIPT, extension.__file__, str(csrc), str(staging),
             str(result)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=staging,
        )
    if proc.returncode != 0 or not result.is_file():
        text = log.read_text(encoding="utf-8", errors="replace")
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise BuildError(
            f"the build exited with status {proc.returncode} (log: {log}):\n{tail}",
            lasting=proc.returncode >= 0,
        )
    return pathlib.Path(result.read_text(encoding="utf-8").strip())


_BUILD_SCRIPT = (
    "import importlib.util, pathlib, sys\n"
    "spec = importlib.util.spec_from_file_location('snntorch_nengo_extension', sys.argv[1])\n"
    "recipe = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(recipe)\n"
    "built = recipe.build(sys.argv[2], sys.argv[3])\n"
    "pathlib.Path(sys.argv[4]).write_text(str(built))\n"
)


def build_once(
    folder: Union[str, os.PathLike],
    builder: Callable[[pathlib.Path], pathlib.Path],
    timeout: float = LOCK_TIMEOUT,
    progress: Optional[Callable[..., None]] = None,
) -> pathlib.Path:
    """The module file in build folder ``folder``, built first by
    ``builder(staging)`` (returns the built file) if it is not there yet.

    Under a file lock: of processes that call this together one builds, the
    others wait and find it built. The build goes to a staging folder renamed
    into place when done, so an interrupted build leaves no half folder. A
    failing build writes ``<folder>.failed`` (unless the error is not
    ``lasting``) and raises `BuildError`; while that file exists later calls
    raise at once.
    """
    folder = pathlib.Path(folder)
    target = module_file(folder)
    if target.is_file():
        return target
    failed = folder.with_name(folder.name + ".failed")
    folder.parent.mkdir(parents=True, exist_ok=True)
    def waiting():
        if progress is not None:
            progress("waiting for another process's build of the snntorch_nengo C++ kernels...")

    with locked(folder.with_name(folder.name + ".lock"), timeout, on_wait=waiting):
        if target.is_file():
            return target
        if failed.is_file():
            raise BuildError(
                f"an earlier build failed (its log: {failed}; delete that file, or run "
                "`python -m snntorch_nengo --build`, to try again)"
            )
        staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        start = time.monotonic()
        if progress is not None:
            progress(PROGRESS, end="")
        try:
            built = pathlib.Path(builder(staging))
        except BaseException as e:
            if progress is not None:
                progress(" failed")
            if isinstance(e, Exception) and getattr(e, "lasting", True):
                log = staging / "build.log"
                failed.write_text(
                    f"{e}\n\n" + (log.read_text(errors="replace") if log.is_file() else ""),
                    encoding="utf-8",
                )
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(e, BuildError) or not isinstance(e, Exception):
                raise
            raise BuildError(f"{type(e).__name__}: {e}") from e
        os.replace(built, staging / target.name)
        for sub in ("lib", "obj"):
            shutil.rmtree(staging / sub, ignore_errors=True)
        (staging / "built.txt").unlink(missing_ok=True)
        if folder.exists():  # left by a build whose module was deleted
            shutil.rmtree(folder)
        os.rename(staging, folder)
        if progress is not None:
            progress(f" done ({time.monotonic() - start:.0f} s, in {folder})")
    return target


def _stderr(message, end="\n"):
    print(message, end=end, file=sys.stderr, flush=True)


def import_module(path: Union[str, os.PathLike]) -> ModuleType:
    """Import the built module at ``path`` as ``snntorch_nengo._C``."""
    loader = importlib.machinery.ExtensionFileLoader(extension.MODULE, str(path))
    spec = importlib.util.spec_from_file_location(extension.MODULE, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[extension.MODULE] = module
    return module


def stale_prebuilt(
    origin: Union[str, os.PathLike], csrc: Union[str, os.PathLike]
) -> Optional[str]:
    """Why the prebuilt module file ``origin`` must not be loaded: it records
    sources other than those in ``csrc`` (an editable install whose sources
    changed since); None if it records the same, or none (older builds)."""
    built = extension.built_hash(origin)
    if built is None or built == extension.source_hash(csrc):
        return None
    return (
        f"{origin} was built from other sources than {csrc} (reinstall, or "
        "the kernels are built from the current ones just in time)"
    )


def check_prebuilt() -> Optional[str]:
    """`stale_prebuilt` for the ``snntorch_nengo._C`` that an import would
    load (None also when there is none, or no sources, or the JIT build is off:
    an older module is better than none)."""
    if not enabled():
        return None
    csrc = find_sources()
    try:
        spec = importlib.util.find_spec(extension.MODULE)
    except (ImportError, ValueError):
        return None
    if csrc is None or spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    try:
        return stale_prebuilt(spec.origin, csrc)
    except OSError:
        return None


#: the last outcome of `load`: the module file, or why there is none
STATE = {"path": None, "error": None}


def build(force: bool = False) -> pathlib.Path:
    """The module file of the extension built from the package's sources,
    building it first if it is not in the cache (`BuildError` if that fails).
    ``force`` retries a build that failed before."""
    csrc = find_sources()
    if csrc is None:
        raise BuildError("the package ships no C++ sources to build (no _csrc/sources.txt)")
    folder = cache_dir(csrc)
    if force:
        folder.with_name(folder.name + ".failed").unlink(missing_ok=True)
    return build_once(folder, lambda staging: compile_into(csrc, staging), progress=_stderr)


def load() -> Optional[ModuleType]:
    """The JIT-built extension module (building it first if needed), or None:
    disabled, no sources, or a failed build (``STATE["error"]`` says which).

    Only for a process that has not loaded a prebuilt ``snntorch_nengo._C``:
    the two would register the same torch ops twice.
    """
    STATE.update(path=None, error=None)
    if not enabled():
        STATE["error"] = f"the just-in-time build is off ({ENV_JIT}=0)"
        return None
    try:
        path = build()
        module = import_module(path)
    except Exception as e:  # noqa: BLE001 (a compiler, torch or file system error)
        STATE["error"] = f"the just-in-time build failed: {e}"
        return None
    STATE["path"] = str(path)
    return module


_warned = False


def warn_missing(prebuilt_error: Optional[str], jit_error: Optional[str]) -> bool:
    """Warn (once per process) that the C++ kernels are missing, and how to get
    them; True if this call warned."""
    global _warned
    if _warned:
        return False
    _warned = True
    fix = (
        f"unset {ENV_JIT} to build them on first use"
        if not enabled()
        else "install a C++ compiler (g++) and run `python -m snntorch_nengo --build`, "
        "or reinstall with `pip install --no-build-isolation -e .` after torch"
    )
    warnings.warn(
        "snntorch_nengo's C++ kernels are not loaded, so it runs its torch kernels "
        f"(several times slower on the CPU). Prebuilt: {prebuilt_error}; "
        f"just in time: {jit_error}. Fix: {fix}.",
        KernelsWarning,
        stacklevel=3,
    )
    return True
