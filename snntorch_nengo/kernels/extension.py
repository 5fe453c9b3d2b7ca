"""How the C++ extension ``snntorch_nengo._C`` is built: one recipe for every build.

``setup.py`` (at install), `snntorch_nengo.kernels.jit` (on first use, when no
prebuilt extension is there) and CMake (``make test-cpp``) build the same
sources with the same flags: the list and the per-source flags are in
``sources.txt`` beside the sources (``csrc/`` in the source tree, shipped in the
package as ``snntorch_nengo/_csrc``), read here and by ``csrc/CMakeLists.txt``.

This module imports only the standard library at the top: setup.py loads it
by file path, before the package (and perhaps torch) can be imported. torch is
imported by the functions that build.

Run as a script, it builds the extension into a folder (the JIT build runs it
in a subprocess, so that the compiler's output goes to a log file and a failing
build cannot take the user's process with it)::

    python extension.py CSRC_DIR OUT_DIR
"""

import dataclasses
import hashlib
import os
import pathlib
import platform
import sys
import traceback
from types import ModuleType
from typing import Any, Callable, Optional, Union

#: the extension's module name (``PYBIND11_MODULE(TORCH_EXTENSION_NAME)``)
MODULE = "snntorch_nengo._C"
SOURCE_LIST = "sources.txt"
#: flags of every source in the setuptools builds (CMake sets its own
#: optimisation level and finds OpenMP itself)
CXX_FLAGS = ("-O3", "-g0", "-fopenmp")
LINK_FLAGS = ("-fopenmp",)
#: part of the JIT cache key with the sources and the flags above: raise it
#: when a change to how `build` compiles makes older builds unfit
RECIPE_VERSION = 2

_X86 = ("x86_64", "amd64", "i386", "i486", "i586", "i686", "x86")


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    flags: tuple = ()
    defines: tuple = ()
    x86_only: bool = False
    python_only: bool = False


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The sources of one build, in link order, and how each compiles."""

    csrc: pathlib.Path
    sources: tuple  # of Source, for this machine and build
    common_flags: tuple

    @property
    def defines(self) -> list:
        return [d for s in self.sources for d in s.defines]

    @property
    def paths(self) -> list:
        return [str(self.csrc / s.name) for s in self.sources]

    def flags_of(self, path: str) -> list:
        """The compile flags of the source at ``path``, besides the common ones."""
        name = os.path.basename(path)
        return [f for s in self.sources if s.name == name for f in s.flags]


def is_x86(machine: Optional[str] = None) -> bool:
    return (machine or platform.machine()).lower() in _X86


def parse(text: str, where: str = SOURCE_LIST) -> tuple:
    """(sources, common flags) of a ``sources.txt``; a bad line raises ValueError."""
    sources, common = [], []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        name, rest = tokens[0], tokens[1:]
        if name == "*":
            bad = [t for t in rest if not t.startswith("-") or t.startswith("-D")]
            if bad:
                raise ValueError(f"{where}:{number}: the '*' line takes compile flags only, not {bad}")
            common += rest
            continue
        if not name.endswith((".cpp", ".cc", ".cxx")):
            raise ValueError(f"{where}:{number}: {name!r} is not a C++ source (.cpp)")
        words = [t for t in rest if not t.startswith("-")]
        unknown = sorted(set(words) - {"x86", "python"})
        if unknown:
            raise ValueError(
                f"{where}:{number}: unknown word(s) {unknown} after {name} "
                "(expected x86, python, -DMACRO or -flag)"
            )
        sources.append(
            Source(
                name,
                flags=tuple(t for t in rest if t.startswith("-") and not t.startswith("-D")),
                defines=tuple(t[2:] for t in rest if t.startswith("-D")),
                x86_only="x86" in words,
                python_only="python" in words,
            )
        )
    if not sources:
        raise ValueError(f"{where}: lists no sources")
    return tuple(sources), tuple(common)


def recipe(
    csrc: Union[str, os.PathLike],
    machine: Optional[str] = None,
    python_module: bool = True,
) -> Recipe:
    """The recipe of the sources in folder ``csrc`` on ``machine`` (this one by
    default); ``python_module=False`` leaves out the Python module's sources."""
    csrc = pathlib.Path(csrc).resolve()
    path = csrc / SOURCE_LIST
    sources, common = parse(path.read_text(encoding="utf-8"), str(path))
    x86 = is_x86(machine)
    chosen = tuple(
        s for s in sources if (x86 or not s.x86_only) and (python_module or not s.python_only)
    )
    missing = [s.name for s in chosen if not (csrc / s.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lists sources that are not in {csrc}: {missing}")
    return Recipe(csrc, chosen, common)


def source_files(csrc: Union[str, os.PathLike]) -> list:
    """Every file of ``csrc`` the extension is built from (sources, headers, the list)."""
    csrc = pathlib.Path(csrc)
    return sorted(
        p for p in csrc.iterdir()
        if p.is_file() and (p.suffix in (".cpp", ".cc", ".cxx", ".h", ".hpp") or p.name == SOURCE_LIST)
    )


def source_hash(csrc: Union[str, os.PathLike]) -> str:
    """A hash of the sources in ``csrc`` (with their list and flags) and of this
    recipe's flags (hex): a build from other sources or flags has another hash."""
    h = hashlib.sha256(repr((RECIPE_VERSION, MODULE, CXX_FLAGS, LINK_FLAGS)).encode())
    for p in source_files(csrc):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def import_torch(log: Optional[Callable[[str], None]] = None) -> ModuleType:
    """torch, from this interpreter's path or else from the site-packages of
    its environment (``log(message)`` says so).

    pip's isolated build environment hides that environment's site-packages,
    but the torch installed there is the one the package will run with: the
    build uses it, rather than a requirement that would make pip fetch another
    torch (a multi-GB CUDA build by default) whose extension may not load with
    the user's.
    """
    try:
        import torch

        return torch
    except ImportError:
        pass
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    for folder in dict.fromkeys([paths["purelib"], paths["platlib"], *site.getsitepackages()]):
        if not (pathlib.Path(folder) / "torch" / "__init__.py").is_file():
            continue
        # appended, not added as a site dir: the build environment's setuptools
        # stays first, and that environment's .pth files are not run
        sys.path.append(folder)
        try:
            import torch
        except Exception:
            sys.path.remove(folder)
            raise
        if log is not None:
            log(f"snntorch_nengo: building the C++ kernels against torch {torch.__version__} "
                f"of the target environment ({folder})")
        return torch
    raise ImportError(f"no torch in the build environment nor in {paths['purelib']}")


#: what precedes the sources' hash in a built module (python_module.cpp)
HASH_MARKER = b"snntorch_nengo sources sha256 "


def built_hash(path: Union[str, os.PathLike]) -> Optional[str]:
    """The hash of the sources the module file at ``path`` was built from
    (`source_hash`), read without loading it; None if it records none."""
    data = pathlib.Path(path).read_bytes()
    at = data.find(HASH_MARKER)
    if at < 0:
        return None
    start = at + len(HASH_MARKER)
    return data[start:start + 64].decode("ascii", errors="replace")


def extension(r: Recipe, name: str = MODULE) -> Any:
    """The setuptools extension of recipe ``r`` (imports torch); the module
    records the hash of its sources (`built_hash`)."""
    from torch.utils.cpp_extension import CppExtension

    return CppExtension(
        name,
        sources=r.paths,
        include_dirs=[str(r.csrc)],
        define_macros=[(d, None) for d in r.defines]
        + [("SNN_SOURCE_HASH", f'"{source_hash(r.csrc)}"')],
        extra_compile_args={"cxx": [*CXX_FLAGS, *r.common_flags]},
        extra_link_args=list(LINK_FLAGS),
    )


def build_ext_class(
    r: Recipe, optional: bool = False, warn: Optional[Callable[[str], None]] = None
) -> type:
    """torch's BuildExtension, compiling each source of ``r`` with its own
    flags, all sources in parallel threads. With ``optional``, a failing build
    calls ``warn(message)`` and goes on (the package then installs without it).

    distutils' per-file compile instead of ninja: ninja's build file has one
    set of flags for all sources (and ninja may be missing).
    """
    from torch.utils.cpp_extension import BuildExtension

    class RecipeBuildExtension(BuildExtension):
        def __init__(self, *args, **kwargs):
            kwargs["use_ninja"] = False
            super().__init__(*args, **kwargs)

        def run(self):
            try:
                super().run()
            except Exception:  # noqa: BLE001
                if not optional:
                    raise
                warn(
                    "building the C++ extension snntorch_nengo._C failed; it will be "
                    "built on first use instead (snntorch_nengo.kernels.jit), or the "
                    "package runs its slower torch kernels.\n" + traceback.format_exc()
                )

        def build_extension(self, ext):
            compiler = self.compiler
            single = compiler._compile  # torch's wrapper, set by build_extensions

            def compile_one(obj, src, ext_, cc_args, extra_postargs, pp_opts):
                flags = r.flags_of(src)
                if flags:
                    if isinstance(extra_postargs, dict):
                        extra_postargs = dict(extra_postargs)
                        extra_postargs["cxx"] = list(extra_postargs.get("cxx", [])) + flags
                    else:
                        extra_postargs = list(extra_postargs or []) + flags
                return single(obj, src, ext_, cc_args, extra_postargs, pp_opts)

            def compile_parallel(sources, output_dir=None, macros=None, include_dirs=None,
                                 debug=0, extra_preargs=None, extra_postargs=None, depends=None):
                from concurrent.futures import ThreadPoolExecutor

                macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
                    output_dir, macros, include_dirs, sources, depends, extra_postargs
                )
                cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)
                jobs = [(obj,) + tuple(build[obj]) for obj in objects if obj in build]
                workers = max(1, min(len(jobs), os.cpu_count() or 1))
                with ThreadPoolExecutor(workers) as pool:
                    futures = [
                        pool.submit(compile_one, obj, src, ext_, cc_args, extra_postargs, pp_opts)
                        for obj, src, ext_ in jobs
                    ]
                    for f in futures:
                        f.result()
                return objects

            compiler._compile = compile_one
            original_compile = compiler.compile
            compiler.compile = compile_parallel
            try:
                super().build_extension(ext)
            finally:
                compiler._compile = single
                compiler.compile = original_compile

    return RecipeBuildExtension


def build(
    csrc: Union[str, os.PathLike], out_dir: Union[str, os.PathLike]
) -> pathlib.Path:
    """Build the extension from ``csrc`` into ``out_dir`` (objects in
    ``out_dir/obj``) and return the path of the module file."""
    from setuptools import Distribution

    out_dir = pathlib.Path(out_dir).resolve()
    r = recipe(csrc)
    dist = Distribution(
        {"name": "snntorch_nengo_kernels", "ext_modules": [extension(r)],
         "cmdclass": {"build_ext": build_ext_class(r)}}
    )
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(out_dir / "lib")
    cmd.build_temp = str(out_dir / "obj")
    cmd.inplace = False
    cmd.ensure_finalized()
    cmd.run()
    (built,) = cmd.get_outputs()
    return pathlib.Path(built)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} CSRC_DIR OUT_DIR")
    print(build(sys.argv[1], sys.argv[2]))
