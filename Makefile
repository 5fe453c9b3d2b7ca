# snntorch_nengo developer tasks (GNU make). Sized for a 2-core CPU machine.
#
#   make demo        run the examples (seed tutorial twin, spiking digits)
#   make test        the layer check, our tests, the C++ tests, then Nengo's backend suite
#   make test-layers only the import-layer check (import-linter, pyproject.toml)
#   make test-ours   only tests/
#   make test-cpp    only the C++ kernel tests (CMake + ctest, csrc/tests/)
#   make test-nengo  only Nengo's suite (nengo-suite.ini)
#   make test-extras only nengo_extras' suite (extras-suite.ini; EXTRAS_ARGS=--slow)
#   make test-loihi  only tests/loihi/: nengo_loihi's emulator, in .venv-loihi
#   make bench-venv  .venv-bench: ours plus snnTorch and SpikingJelly, for benchmarks
#   make bench-spiking  spiking training/inference against snnTorch and SpikingJelly
#   make clean       remove build/test leftovers (keeps the venv)
#   make distclean   clean + remove the venv
#
# Every target runs from the repository root on purpose: nengo reads
# ./nengorc from the current directory (it has no environment variable for
# its rc file), and ours turns the decoder cache off.

VENV ?= .venv
PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed
# pytest-xdist workers for Nengo's suite
NENGO_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: install test test-layers test-ours test-cpp test-nengo test-extras test-loihi demo clean distclean \
	bench-venv bench-spiking

install: $(STAMP)

# torch FIRST and pinned exactly: this machine has a local CPU wheel of
# torch 2.13.0 (2.13.0+cpu). Any other torch spec (or letting the
# "torch>=2.1" requirement of setup.py pick one) would download a multi-GB
# CUDA build instead.
#
# The package builds the C++ extension snntorch_nengo._C (csrc/) against that
# torch. A plain `pip install -e .` does too (setup.py finds the venv's torch
# from pip's isolated build environment); --no-build-isolation only saves
# setting up that environment, with the build tools installed first
# (setuptools>=70.1 builds editable wheels without `wheel`; <81 for nengo's
# test suite). If the extension fails to compile, setup.py warns and the
# package builds it on first use instead (snntorch_nengo/kernels/jit.py).
CSRC = $(wildcard csrc/*.cpp csrc/*.h) csrc/sources.txt

$(STAMP): setup.py pyproject.toml $(CSRC)
	python3 -m venv $(VENV)
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install "setuptools>=70.1,<81"
	$(PY) -m pip install --no-build-isolation -e ".[tests,examples]"
	# Other NIR tools, for tests/test_nir_consumers.py (each of its tests skips
	# when its tool is missing). --no-deps: their requirements name torch,
	# torchvision and torchaudio, which would replace the local CPU torch with a
	# CUDA build; what they import is installed above, but SpikingJelly's
	# logger (loguru). Pinned: the tests check these versions' conventions.
	$(PY) -m pip install --no-deps snntorch==1.0.0 norse==1.1.0 spikingjelly==2.0.0 \
		nirtorch==2.6 "loguru>=0.7,<1"
	# nengo_extras' suite (test-extras): a third-party Nengo package with its
	# own Operator subclass and Simulator subclass. --no-deps: it asks for
	# nothing beyond what is installed above (its optional extras want
	# TensorFlow/Keras, whose tests skip).
	$(PY) -m pip install --no-deps nengo-extras==0.5.0
	touch $@

# All suites always run (reported separately); fails if any failed.
test: $(STAMP)
	@rc=0; \
	$(MAKE) --no-print-directory test-layers || rc=1; \
	$(MAKE) --no-print-directory test-ours || rc=1; \
	$(MAKE) --no-print-directory test-cpp || rc=1; \
	$(MAKE) --no-print-directory test-nengo || rc=1; \
	$(MAKE) --no-print-directory test-extras || rc=1; \
	$(MAKE) --no-print-directory test-loihi || rc=1; \
	exit $$rc

# Each layer of the package imports only from the layers below it
# (docs/architecture.md, "Layers"); the contracts are in pyproject.toml.
test-layers: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

# One torch/BLAS thread per pytest worker: with more, the workers' threads
# fight over the two cores (a pair of test files took 531 s instead of 38 s).
test-ours: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -n $(NENGO_WORKERS) $(PYTEST_ARGS)

# The C++ kernels (csrc/) built with CMake against the venv's torch, and
# their unit tests (csrc/tests/) under ctest.
test-cpp: $(STAMP)
	cmake -S . -B build/cmake -DPython_EXECUTABLE=$(PY) && \
	cmake --build build/cmake -j2 && \
	ctest --test-dir build/cmake --output-on-failure

test-nengo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -c nengo-suite.ini --rootdir=. --pyargs nengo \
		-n $(NENGO_WORKERS) -q $(PYTEST_ARGS)

# nengo_extras' suite (extras-suite.ini lists what fails in nengo.Simulator too);
# EXTRAS_ARGS=--slow adds its slow tests
EXTRAS_ARGS ?=
test-extras: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -c extras-suite.ini --rootdir=. --pyargs nengo_extras \
		-n $(NENGO_WORKERS) -q $(EXTRAS_ARGS) $(PYTEST_ARGS)

# nengo_loihi 1.1.0 (the last release) needs numpy<2: it calls
# np.array(..., copy=False), which numpy 2 turns into an error. It asks for
# nengo>=3.1 and runs with nengo 4.1 (it only warns that it was tested up to
# 3.2), so nengo keeps our own range. Hence a second venv, .venv-loihi:
#   torch==2.13.0  FIRST, for the same reason as above (local CPU wheel)
#   numpy<2        for nengo_loihi (see above)
#   nengo-loihi==1.1.0, and our package's runtime needs for training (lightning,
#   torchmetrics), scikit-learn (the digits) and pytest<8 (as in [tests]).
# Our package is used from the source tree through PYTHONPATH (no second build
# of the C++ extension; without it the kernels run in torch). One torch thread:
# the networks are small and the machine's two cores are shared.
LOIHI_VENV ?= .venv-loihi
LOIHI_PY = $(LOIHI_VENV)/bin/python
LOIHI_STAMP = $(LOIHI_VENV)/.installed

$(LOIHI_STAMP): setup.py
	python3 -m venv $(LOIHI_VENV)
	$(LOIHI_PY) -m pip install torch==2.13.0
	$(LOIHI_PY) -m pip install "numpy<2" "nengo>=4.0,<5" nengo-loihi==1.1.0 \
		"lightning>=2.2" "torchmetrics>=1.0" scikit-learn "pytest<8"
	touch $@

test-loihi: $(LOIHI_STAMP)
	PYTHONPATH=$(CURDIR) OMP_NUM_THREADS=1 $(LOIHI_PY) -m pytest -c tests/loihi/pytest.ini \
		--rootdir=. tests/loihi -q $(PYTEST_ARGS)

# The peers of benchmarks/spiking_training.py, in their own venv: torch FIRST
# (pinned, as above), then our package as in the main venv, then snnTorch and
# SpikingJelly with --no-deps (their requirements would fetch another torch)
# and the few pure-Python packages they import.
BENCH_VENV ?= .venv-bench
BENCH_PY = $(BENCH_VENV)/bin/python
BENCH_STAMP = $(BENCH_VENV)/.installed
# what the peers import that --no-deps leaves out (SpikingJelly: loguru)
BENCH_PEER_DEPS = "loguru>=0.7,<1"

$(BENCH_STAMP): setup.py pyproject.toml $(CSRC)
	python3 -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install torch==2.13.0
	$(BENCH_PY) -m pip install "setuptools>=70.1,<81"
	$(BENCH_PY) -m pip install --no-build-isolation -e ".[examples]"
	$(BENCH_PY) -m pip install --no-deps snntorch==1.0.0 spikingjelly==2.0.0
	$(BENCH_PY) -m pip install $(BENCH_PEER_DEPS)
	touch $@

bench-venv: $(BENCH_STAMP)

# one torch thread, as benchmarks/run.py; SPIKING_ARGS e.g. --quick
SPIKING_ARGS ?=
bench-spiking: $(BENCH_STAMP)
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/spiking_training.py $(SPIKING_ARGS)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/coming_from_torch.py outputs
	MPLBACKEND=Agg $(PY) examples/spiking_digits.py outputs

clean:
	rm -rf build dist *.egg-info .pytest_cache outputs
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LOIHI_VENV) $(BENCH_VENV)
