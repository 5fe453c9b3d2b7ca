"""The package as installed: the shared build recipe, the just-in-time C++
build (cache key, lock, failure marker, the real build loaded in a process
whose prebuilt extension is hidden), the warning without kernels, `info()`,
``python -m snntorch_nengo`` and the sources shipped by setup.py's build_py.
"""

import io
import multiprocessing
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch

import snntorch_nengo
from snntorch_nengo import heap
from snntorch_nengo.kernels import cpp, extension, jit

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

# run first in a subprocess: the prebuilt snntorch_nengo._C cannot be found
HIDE_PREBUILT = textwrap.dedent(
    """
    import sys

    class _HidePrebuilt:
        def find_spec(self, name, path=None, target=None):
            if name == "snntorch_nengo._C":
                raise ImportError("the prebuilt extension is hidden by the test")
            return None

    sys.meta_path.insert(0, _HidePrebuilt())
    """
)


def run_python(code, env=None, timeout=900):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )


# -- the recipe ------------------------------------------------------------------


def test_recipe_reads_the_shared_source_list():
    r = extension.recipe(CSRC, machine="x86_64")
    names = [s.name for s in r.sources]
    assert names[0] == "kernels_default.cpp"  # first: see csrc/sources.txt
    assert set(names) == {
        "kernels_default.cpp", "kernels_avx2.cpp", "kernels_avx512.cpp", "ops.cpp",
        "program.cpp", "python_module.cpp",
    }
    assert set(r.defines) == {"SNN_HAVE_AVX2", "SNN_HAVE_AVX512"}
    assert r.flags_of(str(CSRC / "kernels_avx2.cpp")) == ["-mavx2", "-mfma", "-mf16c"]
    assert "-mavx512f" in r.flags_of("kernels_avx512.cpp")
    assert r.flags_of("ops.cpp") == []
    assert r.common_flags == ("-ffp-contract=off",)

    # elsewhere no x86 copies (nor their defines); CMake's library has no Python module
    arm = extension.recipe(CSRC, machine="aarch64")
    assert [s.name for s in arm.sources] == [
        "kernels_default.cpp", "ops.cpp", "program.cpp", "python_module.cpp"]
    assert arm.defines == []
    lib = extension.recipe(CSRC, machine="x86_64", python_module=False)
    assert "python_module.cpp" not in [s.name for s in lib.sources]


def test_recipe_refuses_bad_lines(tmp_path):
    with pytest.raises(ValueError, match=r"sources.txt:2: unknown word\(s\) \['avx2'\]"):
        extension.parse("ops.cpp\nkernels_avx2.cpp avx2 -mavx2\n", "sources.txt")
    with pytest.raises(ValueError, match="'kernels.h' is not a C\\+\\+ source"):
        extension.parse("kernels.h\n")
    with pytest.raises(ValueError, match="takes compile flags only"):
        extension.parse("* -DX\nops.cpp\n")
    with pytest.raises(ValueError, match="lists no sources"):
        extension.parse("# nothing\n* -O2\n")
    (tmp_path / "sources.txt").write_text("ops.cpp\ngone.cpp\n")
    (tmp_path / "ops.cpp").write_text("")
    with pytest.raises(FileNotFoundError, match=r"not in .*\['gone.cpp'\]"):
        extension.recipe(tmp_path)


# -- the cache key ---------------------------------------------------------------


def test_cache_key_names_torch_abi_machine_and_the_sources(tmp_path):
    copy = tmp_path / "csrc"
    shutil.copytree(CSRC, copy)
    key = jit.cache_key(copy)
    assert key == jit.cache_key(CSRC)  # the same files: the same build
    assert key.startswith(f"torch{torch.__version__}-cxx11abi")
    assert sys.implementation.cache_tag in key

    header = copy / "neurons.h"
    header.write_text(header.read_text() + "\n// changed\n")
    changed = jit.cache_key(copy)
    assert changed != key
    (copy / "sources.txt").write_text((copy / "sources.txt").read_text() + "# more\n")
    assert jit.cache_key(copy) not in (key, changed)
    # so do the recipe's own flags
    original = extension.CXX_FLAGS
    try:
        extension.CXX_FLAGS = original + ("-DEXTRA",)
        assert jit.cache_key(copy) not in (key, changed)
    finally:
        extension.CXX_FLAGS = original
    # files the build does not read don't count
    before = jit.cache_key(copy)
    (copy / "notes.md").write_text("not a source")
    assert jit.cache_key(copy) == before


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(jit.ENV_CACHE, str(tmp_path / "c"))
    assert jit.cache_dir(CSRC) == tmp_path / "c" / "cpp" / jit.cache_key(CSRC)
    monkeypatch.delenv(jit.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_root() == tmp_path / "xdg" / "snntorch_nengo"


# -- a prebuilt module from other sources -----------------------------------------


def test_a_module_built_from_other_sources_is_stale(tmp_path):
    copy = tmp_path / "csrc"
    shutil.copytree(CSRC, copy)
    current = extension.source_hash(copy)
    module = tmp_path / "_C.so"
    module.write_bytes(b"\x7fELF..." + extension.HASH_MARKER + current.encode() + b"\0...")
    assert extension.built_hash(module) == current
    assert jit.stale_prebuilt(module, copy) is None

    (copy / "ops.cpp").write_text((copy / "ops.cpp").read_text() + "\n// changed\n")
    reason = jit.stale_prebuilt(module, copy)
    assert reason is not None and "was built from other sources than" in reason

    # a module built before hashes were recorded is taken as it is
    old = tmp_path / "old.so"
    old.write_bytes(b"\x7fELF no hash here")
    assert extension.built_hash(old) is None and jit.stale_prebuilt(old, copy) is None


def test_the_loaded_module_records_the_hash_of_its_sources():
    if not cpp.AVAILABLE:
        pytest.skip(f"no C++ kernels: {cpp.IMPORT_ERROR}")
    recorded = extension.built_hash(cpp.PATH)
    if recorded is None:
        pytest.skip(f"{cpp.PATH} was built before modules recorded their sources")
    assert cpp._C.SOURCE_HASH == recorded
    # loaded only when it matches the package's sources (else the JIT build is)
    assert recorded == extension.source_hash(jit.find_sources())


# -- build_once: lock, staging, failure -------------------------------------------


def _fake_build(folder, counter, delay):
    def builder(staging):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(delay)  # long enough for the others to be waiting on the lock
        out = staging / "lib" / "built.so"
        out.parent.mkdir()
        out.write_text("module")
        return out

    messages = []
    path = jit.build_once(folder, builder, timeout=60,
                          progress=lambda m, end="\n": messages.append(m))
    return str(path), messages


def _race(args):
    return _fake_build(*args)


def test_processes_that_start_together_build_once(tmp_path):
    folder, counter = tmp_path / "cpp" / "key", tmp_path / "counter"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        paths, messages = zip(*pool.map(_race, [(folder, counter, 1.5)] * 3))
    assert counter.read_text().count("\n") == 1
    # the one that built said so (start, then done); the others that waited, that they wait
    builders = [m for m in messages if m and m[0] == jit.PROGRESS]
    assert len(builders) == 1 and builders[0][1].startswith(" done (")
    assert all(m == [] or m[0].startswith("waiting for another process") for m in messages
               if m not in builders)
    assert len(set(paths)) == 1 and pathlib.Path(paths[0]) == jit.module_file(folder)
    assert jit.module_file(folder).read_text() == "module"
    # what the build left besides the module is gone, and so is the staging folder
    assert sorted(p.name for p in folder.iterdir()) == [jit.module_file(folder).name]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["key", "key.lock"]
    # built: later calls don't build, and say nothing
    assert _fake_build(folder, counter, 0) == (paths[0], [])
    assert counter.read_text().count("\n") == 1


def test_a_failed_build_is_not_retried_until_asked(tmp_path):
    folder, calls = tmp_path / "key", []

    def failing(staging):
        calls.append(staging)
        (staging / "build.log").write_text("g++: error: no such compiler\n")
        raise jit.BuildError("the build exited with status 1")

    with pytest.raises(jit.BuildError, match="status 1"):
        jit.build_once(folder, failing, timeout=10)
    failed = tmp_path / "key.failed"
    assert "no such compiler" in failed.read_text()
    assert not folder.exists() and not any(tmp_path.glob("key.partial-*"))
    with pytest.raises(jit.BuildError, match=r"an earlier build failed .*key.failed"):
        jit.build_once(folder, failing, timeout=10)
    assert len(calls) == 1


def test_build_force_retries_a_failed_build(monkeypatch, tmp_path):
    """`jit.build` (what ``python -m snntorch_nengo --build`` calls) refuses
    while a failed build's marker is there, and ``force`` retries it."""
    monkeypatch.setenv(jit.ENV_CACHE, str(tmp_path))
    folder = jit.cache_dir()
    assert folder.parent == tmp_path / "cpp"
    folder.parent.mkdir(parents=True)
    failed = folder.with_name(folder.name + ".failed")
    failed.write_text("g++: error\n")
    calls = []

    def fake_compile(csrc, staging):
        calls.append(pathlib.Path(csrc))
        out = staging / "lib" / "built.so"
        out.parent.mkdir()
        out.write_text("module")
        return out

    monkeypatch.setattr(jit, "compile_into", fake_compile)
    with pytest.raises(jit.BuildError, match="an earlier build failed"):
        jit.build()
    assert calls == []
    path = jit.build(force=True)
    assert path == jit.module_file(folder) and path.read_text() == "module"
    assert calls == [jit.find_sources()] and not failed.exists()


def test_a_killed_build_is_retried(tmp_path):
    folder, calls = tmp_path / "key", []

    def killed(staging):
        calls.append(staging)
        if len(calls) == 1:
            raise jit.BuildError("the build exited with status -9", lasting=False)
        out = staging / "built.so"
        out.write_text("module")
        return out

    with pytest.raises(jit.BuildError, match="status -9"):
        jit.build_once(folder, killed, timeout=10)
    assert not (tmp_path / "key.failed").exists()
    assert jit.build_once(folder, killed, timeout=10).read_text() == "module"
    assert len(calls) == 2


def test_a_held_lock_times_out_with_a_clear_error(tmp_path):
    with jit.locked(tmp_path / "key.lock"):
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            message = pool.apply(_try_lock, (tmp_path / "key.lock",))
    assert "has held" in message and "key.lock" in message


def _try_lock(path):
    try:
        with jit.locked(path, timeout=0.2):
            return "acquired"
    except jit.BuildError as e:
        return str(e)


# -- warnings --------------------------------------------------------------------


def test_missing_kernels_warn_once_naming_the_fix(monkeypatch):
    monkeypatch.setattr(jit, "_warned", False)
    monkeypatch.setenv(jit.ENV_JIT, "0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert jit.warn_missing("ImportError: no _C", "the just-in-time build is off")
        assert not jit.warn_missing("ImportError: no _C", "the just-in-time build is off")
    assert len(caught) == 1 and caught[0].category is jit.KernelsWarning
    assert f"unset {jit.ENV_JIT}" in str(caught[0].message)

    monkeypatch.setattr(jit, "_warned", False)
    monkeypatch.setenv(jit.ENV_JIT, "1")
    with pytest.warns(jit.KernelsWarning, match="python -m snntorch_nengo --build"):
        jit.warn_missing("ImportError: no _C", "the build failed")


def test_without_prebuilt_and_jit_off_the_import_warns_once():
    proc = run_python(
        HIDE_PREBUILT + textwrap.dedent(
            """
            import warnings
            warnings.simplefilter("always")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                from snntorch_nengo.kernels import cpp, jit, ops
                import snntorch_nengo
                import torch
                ops.lif_lowpass(torch.ones(3, 2), *(torch.zeros(2) for _ in range(3)),
                                dt=0.001, tau_rc=0.02, tau_ref=0.002, min_voltage=0.0,
                                amplitude=1.0, decay=0.9)
            ours = [w for w in caught if w.category is jit.KernelsWarning]
            print(len(ours), cpp.AVAILABLE, cpp.SOURCE)
            print(ours[0].message)
            print(ops.backend(torch.zeros(1)))
            """
        ),
        env={jit.ENV_JIT: "0"},
    )
    assert proc.returncode == 0, proc.stderr
    count, message, backend = proc.stdout.strip().splitlines()[-3:]
    assert count == "1 False None"
    assert "SNNTORCH_NENGO_JIT=0" in message and "unset SNNTORCH_NENGO_JIT" in message
    assert "the prebuilt extension is hidden" in message
    assert backend == "reference"
    assert jit.PROGRESS not in proc.stderr  # nothing was built


# -- the real just-in-time build -------------------------------------------------


def test_without_prebuilt_the_kernels_are_built_and_loaded_just_in_time():
    """Builds into the user's cache (once per torch and sources: ~1-3 min on
    two cores), then equals the torch reference bitwise in float64."""
    proc = run_python(
        HIDE_PREBUILT + textwrap.dedent(
            """
            import torch
            from snntorch_nengo.kernels import cpp, jit, reference
            from snntorch_nengo.engine import program
            assert cpp.SOURCE == "jit", cpp.IMPORT_ERROR
            assert cpp.PATH == jit.STATE["path"]
            assert cpp.PATH.startswith(str(jit.cache_dir())), (cpp.PATH, jit.cache_dir())
            assert cpp.HAS_BACKWARD and program._native is not None
            g = torch.Generator().manual_seed(0)
            J = torch.rand(200, 37, dtype=torch.float64, generator=g) * 3
            states = [torch.zeros(37, dtype=torch.float64) for _ in range(3)]
            args = dict(dt=0.001, tau_rc=0.02, tau_ref=0.002, min_voltage=0.0,
                        amplitude=1.0, decay=0.9)
            ours = cpp.lif_lowpass(J, *states, **args)
            ref = reference.lif_lowpass(J, *states, **args)
            assert all(torch.equal(a, b) for a, b in zip(ours, ref))
            assert ours[0].sum() > 0
            print("ok", cpp.kernel_isa())
            """
        ),
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.strip().startswith("ok")
    # a second process finds it built: no progress message
    again = run_python(HIDE_PREBUILT + "from snntorch_nengo.kernels import cpp\n"
                       "print(cpp.SOURCE)\n", timeout=120)
    assert again.stdout.strip() == "jit" and jit.PROGRESS not in again.stderr


# -- info() and python -m snntorch_nengo --------------------------------------------


def test_info_says_what_runs_here():
    out = io.StringIO()
    snntorch_nengo.info(file=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith(f"snntorch_nengo {snntorch_nengo.__version__} (python ")
    assert f"torch {torch.__version__}" in lines[1]
    (cpp_line,) = [line for line in lines if line.startswith("C++ kernels: ")]
    if cpp.AVAILABLE:
        assert cpp_line.startswith("C++ kernels: active, ")
        assert cpp.kernel_isa() in cpp_line and cpp.PATH in cpp_line
    else:
        assert cpp_line.startswith("C++ kernels: none")
    assert f"cache: {jit.cache_dir()}" in text
    assert any(line.startswith("Triton kernels: ") for line in lines)
    assert any(line.startswith("CUDA: ") for line in lines)
    strategies = lines[lines.index("Run strategies:") + 1:-1]
    assert [s.split(":")[0].strip() for s in strategies] == [
        "windowed", "in_place", "compiled", "functional"]
    assert lines[-1].startswith("Heap (large temporaries, heap.py): ")
    assert heap.status() in lines[-1]
    loop = "the C++ loop" if cpp.AVAILABLE else "the Python loop"
    assert loop in text
    from snntorch_nengo import sysinfo

    facts = sysinfo.collect()
    assert facts["cpp"]["active"] == cpp.AVAILABLE and facts["cpp"]["source"] == cpp.SOURCE


def test_python_m_snntorch_nengo_prints_info():
    proc = run_python("import runpy; runpy.run_module('snntorch_nengo', run_name='__main__')",
                      timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("snntorch_nengo ")
    assert "C++ kernels: " in proc.stdout and "Run strategies:" in proc.stdout


def test_python_m_snntorch_nengo_rejects_unknown_options():
    proc = run_python("from snntorch_nengo.sysinfo import main; main(['--bogus'])", timeout=300)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_the_build_finds_the_torch_of_the_environment_it_installs_into():
    """As in pip's isolated build environment: the environment's site-packages
    are taken off the path (pip's sitecustomize does so), the build still finds
    their torch (and nothing else of theirs: it is appended, not a site dir)."""
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        sys.path[:] = [p for p in sys.path if "-packages" not in p]
        try:
            import torch
            raise SystemExit("torch still importable")
        except ImportError:
            pass
        spec = importlib.util.spec_from_file_location("recipe", {str(extension.__file__)!r})
        recipe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(recipe)
        messages = []
        torch = recipe.import_torch(log=messages.append)
        print(torch.__version__)
        print(messages[0])
        print(sys.path[-1])
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd="/", env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    version, message, appended = proc.stdout.strip().splitlines()
    assert version == torch.__version__
    assert f"against torch {torch.__version__} of the target environment" in message
    assert pathlib.Path(appended) == pathlib.Path(torch.__file__).parent.parent


# -- setup.py ships the sources ----------------------------------------------------


def test_build_py_ships_the_sources_for_the_jit_build(tmp_path):
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, SNNTORCH_NENGO_NO_EXTENSION="1"),
    )
    assert proc.returncode == 0, proc.stderr
    shipped = tmp_path / "snntorch_nengo" / "_csrc"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(
        p.name for p in extension.source_files(CSRC))
    # the same files: an installed package builds what a checkout builds
    assert extension.source_hash(shipped) == extension.source_hash(CSRC)
    assert [s.name for s in extension.recipe(shipped).sources] == [
        s.name for s in extension.recipe(CSRC).sources]
    assert (tmp_path / "snntorch_nengo" / "kernels" / "jit.py").is_file()
