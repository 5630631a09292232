"""zoo.engine.allocator: the mallopt settings are the ones malloc.h names, and with them glibc reuses the memory a
batch freed instead of faulting fresh pages in (counted by the kernel, in a fresh process each)."""
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.engine import allocator

ROOT = Path(__file__).resolve().parent.parent

# Three 30 MiB buffers alive at once, then freed, ten times: the page faults after a first, warming round.
FAULTS = """
import resource, sys
import numpy as np
from zoo.engine.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def batch():
    held = [np.ones(30 * 2**20 // 8) for _ in range(3)]
    del held
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


class FakeLibc:
    def __init__(self, answer=1):
        self.calls, self.answer = [], answer

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.answer


def test_settings_are_malloc_h_parameters():
    libc = FakeLibc()
    assert allocator.keep_freed_memory(libc)
    # malloc.h: M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3
    assert dict(libc.calls) == {-3: 32 * 2**20, -1: 256 * 2**20, -2: 64 * 2**20}


def test_a_refusal_is_reported():
    assert not allocator.keep_freed_memory(FakeLibc(answer=0))


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULTS, mode], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc's allocator only")
def test_freed_batches_are_reused_without_page_faults():
    default, tuned = page_faults("default"), page_faults("tuned")
    assert tuned < 100 < default, (default, tuned)
