"""heap.warm: glibc serves large temporaries from freed memory, not fresh pages."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# a fresh process: how many chunks glibc holds mmapped, before and after a
# 20 MiB tensor, once the first engine is built (malloc_info's XML)
PROBE = textwrap.dedent("""
    import ctypes, os, re, tempfile
    import nengo, torch
    import snntorch_nengo
    from snntorch_nengo import heap

    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]

    def mmapped():
        fd, path = tempfile.mkstemp()
        os.close(fd)
        fp = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        with open(path) as f:
            text = f.read()
        os.unlink(path)
        return int(re.search(r'<total type="mmap" count="(\\d+)"', text).group(1))

    assert heap.status().startswith("not yet warmed")
    with nengo.Network() as net:
        nengo.Ensemble(5, 1)
    snntorch_nengo.NengoModule(net)
    before = mmapped()
    x = torch.empty(20 << 20, dtype=torch.uint8)
    print(mmapped() - before)
    print(heap.status())
""")


def probe(**env):
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
        env={**os.environ, **env},
    ).stdout.split("\n")
    return int(out[0]), out[1]


@glibc
def test_first_engine_warms_the_heap():
    new_mappings, status = probe()
    assert status.startswith("warmed")
    assert new_mappings == 0  # from the heap's freed memory


@glibc
def test_warming_can_be_turned_off():
    new_mappings, status = probe(SNNTORCH_NENGO_WARM_HEAP="0")
    assert status == "left alone (SNNTORCH_NENGO_WARM_HEAP=0)"
    assert new_mappings == 1  # glibc's starting threshold: fresh pages
