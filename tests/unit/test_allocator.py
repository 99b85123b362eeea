"""The agent's allocator setting (monitor/runtime/allocator.py): with the mmap threshold
fixed, a large block allocated after a larger one was freed still gets its own mapping
(returned to the system when freed); without it, glibc's moving threshold puts it on the
heap. Counted with glibc's own mallinfo2 in fresh interpreters."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from monitor.runtime.allocator import ENV_VARIABLE, tune_allocator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

SCRIPT = textwrap.dedent(
    """
    import ctypes, json, sys
    from monitor.runtime.allocator import tune_allocator

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    tuned = tune_allocator() if sys.argv[1] == "tuned" else False
    big = libc.malloc(16 << 20)  # 16 MiB: mmapped either way
    libc.free(big)  # untuned, this raises the threshold to 16 MiB
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)  # 4 MiB, above the fixed 1 MiB threshold
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    print(json.dumps({"tuned": tuned, "mapped": mapped}))
    """
)


def _run(mode: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _env_without_setting() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != ENV_VARIABLE}


def test_a_fixed_threshold_keeps_large_blocks_mapped() -> None:
    assert _run("plain", _env_without_setting()) == {"tuned": False, "mapped": 0}
    assert _run("tuned", _env_without_setting()) == {"tuned": True, "mapped": 1}


def test_the_environments_own_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VARIABLE, "65536")
    assert tune_allocator() is False
    env = {**_env_without_setting(), ENV_VARIABLE: "65536"}
    assert _run("tuned", env)["tuned"] is False
