"""Packaging for snntorch_nengo (plain setuptools)."""

import importlib.util
import os
import pathlib
import re
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

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
# snntorch_nengo/kernels/cpp.py), and the in-place stepping loop. The build
# recipe (sources, per-source flags, defines) is
# snntorch_nengo/kernels/extension.py reading csrc/sources.txt, shared with the
# just-in-time build (snntorch_nengo/kernels/jit.py) and CMake.
#
# It is optional: if torch is missing or the compilation fails, a warning is
# printed and the package installs without it; the package then builds it on
# first use from the sources it ships (snntorch_nengo/_csrc, copied by
# build_py below) into a cache. Set SNNTORCH_NENGO_NO_EXTENSION=1 to skip it.
#
# torch is not a build requirement (pyproject.toml): pip would install another
# torch (a multi-GB CUDA build by default) into its isolated build
# environment, and an extension built against it would not load with the
# user's torch anyway. Instead the build uses the torch of the environment
# being installed into (extension.import_torch), with or without build isolation.
ext_modules = []
cmdclass = {}
CSRC = root / "csrc"


def _load_recipe():
    """snntorch_nengo/kernels/extension.py, by path: the package itself (and
    its dependencies) need not be importable here."""
    path = root / "snntorch_nengo" / "kernels" / "extension.py"
    spec = importlib.util.spec_from_file_location("_snntorch_nengo_extension", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipe = _load_recipe()


def _warn(message):
    bar = "*" * 78
    print(f"\n{bar}\nWARNING: {message}\n{bar}\n", file=sys.stderr)


def _torch_extension():
    """The extension and its build command, or (None, None) without torch."""
    if os.environ.get("SNNTORCH_NENGO_NO_EXTENSION", "") not in ("", "0"):
        return None, None
    try:
        recipe.import_torch(log=lambda m: print(m, file=sys.stderr))
        r = recipe.recipe(CSRC)
        return recipe.extension(r), recipe.build_ext_class(r, optional=True, warn=_warn)
    except Exception as e:  # noqa: BLE001 (torch missing or broken)
        _warn(
            f"torch is not importable ({e!r}): installing snntorch_nengo without its "
            "prebuilt C++ kernels; they will be built on first use (or install torch "
            "first, then this package)."
        )
        return None, None


class BuildPyWithSources(build_py):
    """build_py that also ships the C++ sources, as snntorch_nengo/_csrc, for the
    just-in-time build of an installed package (an editable install builds from
    csrc/ itself)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = pathlib.Path(self.build_lib) / "snntorch_nengo" / "_csrc"
        target.mkdir(parents=True, exist_ok=True)
        for path in recipe.source_files(CSRC):
            self.copy_file(str(path), str(target / path.name))


cmdclass["build_py"] = BuildPyWithSources
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
