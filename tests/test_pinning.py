"""Trials that reserve whole CPUs are pinned to cores no other trial on the node holds."""

import os
import subprocess
import sys
import textwrap

import pytest

from search.compute import devices


def test_core_claims_are_exclusive_and_released(tmp_path):
    first = devices.claim_cores(1, directory=tmp_path, available=[0, 1])
    second = devices.claim_cores(1, directory=tmp_path, available=[0, 1])
    assert first.cores == [0] and second.cores == [1]
    # No third core: nothing is claimed, and a two-core request does not take half.
    assert devices.claim_cores(1, directory=tmp_path, available=[0, 1]) is None
    first.release()
    assert devices.claim_cores(2, directory=tmp_path, available=[0, 1]) is None
    third = devices.claim_cores(1, directory=tmp_path, available=[0, 1])
    assert third.cores == [0]
    second.release()
    third.release()


# A trial process: a thread already running (as TensorFlow's and Ray's are), then the pin.
TRIAL = textwrap.dedent("""
    import os, sys, threading, time
    from pathlib import Path
    from search.compute import devices

    devices.CORE_LOCKS = Path(sys.argv[1])
    ready = threading.Event()
    threading.Thread(target=lambda: (ready.set(), time.sleep(600)), daemon=True).start()
    ready.wait()
    claim = devices.pin_to_free_cores(float(sys.argv[2]))
    masks = {tuple(sorted(os.sched_getaffinity(int(tid)))) for tid in os.listdir("/proc/self/task")}
    print(claim.cores if claim else None, sorted(masks), flush=True)
    sys.stdin.read()  # hold the claim until the test closes stdin
    if claim:
        claim.release()
        print(sorted({tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir("/proc/self/task")}), flush=True)
""")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) != 2, reason="written for a 2-core machine")
def test_two_one_cpu_trials_on_two_cores_are_pinned_apart_and_a_third_is_not(tmp_path):
    every = sorted(os.sched_getaffinity(0))

    def start(cpus):
        process = subprocess.Popen(
            [sys.executable, "-c", TRIAL, str(tmp_path), str(cpus)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        claimed, masks = process.stdout.readline().strip().split(" ", 1)
        return process, claimed, masks

    a, a_cores, a_masks = start(1)
    b, b_cores, b_masks = start(1)
    c, c_cores, _ = start(1)
    fraction, fraction_cores, _ = start(0.5)
    # Each of the first two has a core of its own, and every one of its threads is pinned to it.
    assert sorted([a_cores, b_cores]) == [f"[{every[0]}]", f"[{every[1]}]"]
    assert a_masks == f"[({a_cores[1:-1]},)]" and b_masks == f"[({b_cores[1:-1]},)]"
    # With both cores held, a third trial runs unpinned; so does one with a fraction of a CPU.
    assert c_cores == "None" and fraction_cores == "None"
    # Released, a trial's process (a reused worker) may run on every core again.
    after, _ = a.communicate("", timeout=30)
    assert after.strip() == str([tuple(every)])
    for process in (b, c, fraction):
        process.communicate("", timeout=30)
