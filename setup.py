"""Packaging for snntorch_nengo (plain setuptools)."""

import os
import pathlib
import platform
import re
import sys
import traceback

from setuptools import find_packages, setup

root = pathlib.Path(__file__).parent
version = re.search(
    r'^version\s*=\s*["\']([^"\']+)["\']',
    (root / "snntorch_nengo" / "version.py").read_text(encoding="utf-8"),
    re.MULTILINE,
).group(1)

install_requires = [
    "torch>=2.1",
    "nengo>=4.0,<5",
    # nengo 4.1's LinearFilter.filt breaks on numpy 2.4
    "numpy<2.4",
    "lightning>=2.2",
    "torchmetrics>=1.0",
    # the LightningCLI (snntorch-nengo fit --config ...) parses configs with it
    "jsonargparse[signatures]>=4.27",
]

tests_require = [
    "pytest<8",  # the pytest_nengo plugin shipped with nengo needs pytest<8
    "setuptools<81",  # nengo's test suite imports pkg_resources (gone in 81)
    "pytest-allclose",
    "pytest-plt",
    "pytest-rng",
    "pytest-xdist",
    "scipy",
    "matplotlib",
    "scikit-learn",
    # tests/test_examples_nengodl_cognitive.py runs the nengo_spa twins
    "nengo-spa",
    # the Triton kernels are tested on the CPU through its interpreter
    "triton",
    # NIR export/import (snntorch_nengo.export.nir) is tested in the main venv
    "nir>=1.0",
    # `make test-layers`: the package's layers only import downwards (pyproject.toml)
    "import-linter>=2.0",
]

# The torch C++ extension snntorch_nengo._C built from csrc/: fused
# multi-step spiking-neuron + lowpass CPU kernels, registered as the torch ops
# torch.ops.snntorch_nengo_cpp.* when the module is imported (see
# snntorch_nengo/kernels/cpp.py). It is optional: if torch is missing at build
# time or the compilation fails, a warning is printed and the package installs
# without it (snntorch_nengo.kernels then runs the torch reference instead).
# Set SNNTORCH_NENGO_NO_EXTENSION=1 to skip it.
#
# torch must be importable when this runs, so install with
#   pip install --no-build-isolation -e .
# after installing torch (the Makefile does); with build isolation pip would
# fetch another torch into the build environment.
ext_modules = []
cmdclass = {}

# kernels_impl.h is compiled once per torch CPU capability, with the matching
# instruction-set flags (torch picks the same ones for its own kernels)
_KERNEL_ISA_FLAGS = {
    "kernels_avx2.cpp": ["-mavx2", "-mfma", "-mf16c"],
    "kernels_avx512.cpp": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"],
}


def _warn(message):
    bar = "*" * 78
    print(f"\n{bar}\nWARNING: {message}\n{bar}\n", file=sys.stderr)


def _torch_extension():
    """The extension and its build command, or (None, None) without torch."""
    if os.environ.get("SNNTORCH_NENGO_NO_EXTENSION", "") not in ("", "0"):
        return None, None
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception as e:  # noqa: BLE001 (torch missing or broken)
        _warn(
            f"torch is not importable ({e!r}): building snntorch_nengo without "
            "its C++ kernels. Install torch first and use "
            "`pip install --no-build-isolation` to build them."
        )
        return None, None

    sources = ["csrc/kernels_default.cpp"]  # first: see csrc/CMakeLists.txt
    defines = []
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "i386"):
        sources += ["csrc/kernels_avx2.cpp", "csrc/kernels_avx512.cpp"]
        defines += [("SNN_HAVE_AVX2", None), ("SNN_HAVE_AVX512", None)]
    sources += ["csrc/ops.cpp", "csrc/program.cpp", "csrc/python_module.cpp"]
    extension = CppExtension(
        "snntorch_nengo._C",
        sources=sources,
        include_dirs=[str(root / "csrc")],
        define_macros=defines,
        # -ffp-contract=off: no fused multiply-adds, so float64 results stay
        # bitwise equal to the torch reference
        extra_compile_args={"cxx": ["-O3", "-g0", "-fopenmp", "-ffp-contract=off"]},
        extra_link_args=["-fopenmp"],
    )

    class OptionalBuildExtension(BuildExtension):
        """BuildExtension that warns and goes on when compiling fails.

        Without ninja (per-source flags need distutils' per-file compile), and
        compiling the sources in parallel threads.
        """

        def __init__(self, *args, **kwargs):
            kwargs["use_ninja"] = False
            super().__init__(*args, **kwargs)

        def run(self):
            try:
                super().run()
            except Exception:  # noqa: BLE001
                _warn(
                    "building the C++ extension snntorch_nengo._C failed; "
                    "snntorch_nengo will use its (slower) torch kernels.\n"
                    + traceback.format_exc()
                )

        def build_extension(self, ext):
            compiler = self.compiler
            single = compiler._compile  # torch's wrapper, set by build_extensions

            def compile_one(obj, src, ext_, cc_args, extra_postargs, pp_opts):
                flags = _KERNEL_ISA_FLAGS.get(os.path.basename(src), [])
                if flags:
                    if isinstance(extra_postargs, dict):
                        extra_postargs = dict(extra_postargs)
                        extra_postargs["cxx"] = list(extra_postargs.get("cxx", [])) + flags
                    else:
                        extra_postargs = list(extra_postargs or []) + flags
                return single(obj, src, ext_, cc_args, extra_postargs, pp_opts)

            def compile_parallel(
                sources,
                output_dir=None,
                macros=None,
                include_dirs=None,
                debug=0,
                extra_preargs=None,
                extra_postargs=None,
                depends=None,
            ):
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

    return extension, OptionalBuildExtension


_extension, _build_ext = _torch_extension()
if _extension is not None:
    ext_modules.append(_extension)
    cmdclass["build_ext"] = _build_ext

setup(
    name="snntorch_nengo",
    version=version,
    description="A PyTorch backend for Nengo",
    long_description=(root / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-2.0-or-later",
    packages=find_packages(include=["snntorch_nengo", "snntorch_nengo*"]),
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require={
        # scikit-learn ships the digits data set the examples train on;
        # nengo_spa makes the semantic pointers of the cognitive-model twins
        # (examples/nengodl/spa_*.py), as NengoDL's tutorials use nengo.spa
        "examples": ["matplotlib", "scikit-learn", "nengo-spa"],
        # snntorch_nengo.export.nir (export_nir / import_nir)
        "nir": ["nir>=1.0"],
        "tests": tests_require,
    },
    entry_points={
        "nengo.backends": ["torch = snntorch_nengo:Simulator"],
        "console_scripts": ["snntorch-nengo = snntorch_nengo.cli:main"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    classifiers=[
        "Programming Language :: Python :: 3",
    ],
    zip_safe=False,
)
