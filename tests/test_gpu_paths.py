"""GPU paths, checked as far as a machine without a GPU allows: which strategy each device list
gets, the memory cap of a fraction of a GPU, and fractional trials packed on one GPU.

A real GPU run has not been made on this project's machines; these check what the launcher
and the trainables decide, with the devices injected.
"""

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from trainables.distribute import choose


@pytest.mark.parametrize(
    "devices, logical, workers, expected",
    [
        ("CPU", ["/device:CPU:0"], 1, ("default", [])),
        ("CPU", ["/device:CPU:0", "/device:CPU:1"], 1, ("MirroredStrategy", ["/device:CPU:0", "/device:CPU:1"])),
        ("GPU", ["/device:GPU:0"], 1, ("OneDeviceStrategy", ["/device:GPU:0"])),
        ("GPU", [f"/device:GPU:{i}" for i in range(4)], 1, ("MirroredStrategy", [f"/device:GPU:{i}" for i in range(4)])),
        ("GPU", ["/device:GPU:0"], 2, ("MultiWorkerMirroredStrategy", [])),
        ("CPU", [], 3, ("MultiWorkerMirroredStrategy", [])),
    ],
)
def test_the_strategy_follows_the_devices_a_trial_was_given(devices, logical, workers, expected):
    assert choose(devices, logical, workers) == expected


@pytest.fixture
def stub_nvidia_smi(tmp_path, monkeypatch):
    """An `nvidia-smi` on PATH reporting a 16 GB GPU, which records the arguments it got."""
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\necho 16384\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "args"


def test_a_fraction_of_a_gpu_is_capped_at_that_fraction_of_its_memory(stub_nvidia_smi, monkeypatch):
    from search.compute.devices import _fraction_of_gpu_memory_mb

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert _fraction_of_gpu_memory_mb(0.25) == 4096
    # It asks about the GPU Ray made visible to the trial.
    assert stub_nvidia_smi.read_text().split()[-2:] == ["-i", "2"]
    # Whole GPUs are not capped; nor is anything without nvidia-smi.
    assert _fraction_of_gpu_memory_mb(1.0) is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _fraction_of_gpu_memory_mb(0.25) is None


# Four trials of a quarter GPU each on a Ray that believes it has one GPU: they run at once,
# each with the GPU Ray assigned it made visible.
PACKED = textwrap.dedent(
    """
    import json, os, sys, time

    import ray

    from search.space import Float, SearchSpace
    from search.study import run_study


    def train(config, context):
        # A barrier: each trial says it started, then waits (at most a minute) for all four.
        me = os.path.join(config["out"], f"started-{os.getpid()}-{time.time()}")
        open(me, "w").close()
        def started():
            return len([n for n in os.listdir(config["out"]) if n.startswith("started-") and not n.endswith(".json")])

        deadline = time.time() + 60
        while started() < 4 and time.time() < deadline:
            time.sleep(0.1)
        together = started() == 4
        with open(me + ".json", "w") as file:
            json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "together": together}, file)
        context.report({"epoch": 1, "score": config["x"]})
        return {"epoch": 1, "score": config["x"]}


    train.metrics = ("epoch", "score")
    out = sys.argv[1]
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    space = SearchSpace(
        name="packed", trainable=train, params={"x": Float(0.0, 1.0)}, objectives={"score": "max"},
        constants={"out": out}, num_samples=4, max_epochs=1, max_concurrent=4,
        cpus_per_trial=0.5, gpus_per_trial=0.25, scheduler="none", searcher="random",
    )
    run_study(space, results_dir=os.path.join(out, "results"))
    """
)


@pytest.mark.timeout(300)
def test_quarter_gpu_trials_are_packed_four_to_a_gpu(tmp_path):
    (tmp_path / "packed.py").write_text(PACKED)
    done = subprocess.run([sys.executable, str(tmp_path / "packed.py"), str(tmp_path)], capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import json

    runs = [json.loads(path.read_text()) for path in tmp_path.glob("started-*.json")]
    assert len(runs) == 4
    # Each saw the one GPU Ray assigned it, and all four were training at the same time (one
    # at a time, the first would have waited out its minute alone).
    assert {run["cuda"] for run in runs} == {"0"}
    assert all(run["together"] for run in runs)
