"""Packaging for snntorch_nengo (plain setuptools)."""

import pathlib
import re

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
]

# The torch C++ extension built from csrc/ (batched spiking-neuron and
# lowpass kernels registered as torch custom ops) will go here, via
# torch.utils.cpp_extension.CppExtension/CUDAExtension and BuildExtension
# as cmdclass. Nothing is compiled for now.
ext_modules = []
cmdclass = {}

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
        # scikit-learn ships the digits data set the examples train on
        "examples": ["matplotlib", "scikit-learn"],
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
