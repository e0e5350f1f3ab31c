"""The command line: bad input fails fast and clearly; a tiny study lands in MLflow."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from conftest import too_wide
from conftest import unfolded
from search import launch
from trainables._keras import keras

ROOT = Path(__file__).parents[1]


GOOD_SPACE = (ROOT / "spaces/mnist.py").read_text()


def _variant(old: str, new: str) -> str:
    assert old in GOOD_SPACE
    return GOOD_SPACE.replace(old, new)


@pytest.mark.parametrize(
    "write, args, message",
    [
        (None, ["missing.py"], "Space file not found"),
        ("SPACE = 1\n", ["space.txt"], "must be a Python file ending in .py"),
        ("SPACE = (\n", ["bad.py"], "bad.py:1: syntax error"),
        ("x = 1\n", ["bad.py"], "must define `SPACE = SearchSpace(...)`"),
        (_variant("Int(16, 256, log=True)", "Int(256, 16, log=True)"), ["bad.py"], "`width`: the range is empty or inverted"),
        (_variant("Float(3e-4, 1e-2, log=True)", "Float(-1e-3, 1e-2)"), ["bad.py"], "`learning_rate` = -0.001 is rejected by the trainable: `learning_rate` must be positive"),
        (_variant("Choice([32, 64, 128, 256])", "Choice([0, 64])"), ["bad.py"], "`batch_size` = 0 is rejected by the trainable: `batch_size` must be positive"),
        (_variant('"train_time_s": "min"', '"train_seconds": "min"'), ["bad.py"], "Unknown objective ['train_seconds']"),
        (_variant('targets={"val_accuracy":', 'targets={"val_acc":'), ["bad.py"], "Unknown target metric 'val_acc'"),
        (None, [str(ROOT / "spaces/mnist.py"), "--set", "widht=3"], "Unknown config keys ['widht']"),
        (None, [str(ROOT / "spaces/mnist.py"), "--max-epochs", "1", "--grace-period", "2"], "grace_period"),
        (None, [str(ROOT / "spaces/mnist.py"), "--tracking-uri", "http://127.0.0.1:9/"], "is unreachable"),
        (None, [str(ROOT / "spaces/mnist.py"), "--tracking-uri", "sqlite:////nonexistent/dir/m.db"], "does not exist"),
        (None, [str(ROOT / "spaces/mnist.py"), "--results-dir", "{tmp}/file.txt/results"], "is not writable"),
        (None, [str(ROOT / "spaces/mnist.py"), "--gpu-memory-mb", "512"], "`gpus_per_trial` is 0"),
        (None, [str(ROOT / "spaces/mnist.py"), "--address", "127.0.0.1:9"], "Cannot connect to a Ray cluster at '127.0.0.1:9'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2_before_ray_starts(tmp_path, capsys, write, args, message):
    import ray

    (tmp_path / "file.txt").write_text("")
    if write is not None:
        (tmp_path / args[0]).write_text(write)
        args = [str(tmp_path / args[0]), *args[1:]]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--results-dir" not in args:
        args += ["--results-dir", str(tmp_path / "results")]
    code = launch.main(args)
    err = capsys.readouterr().err
    # Exit code 2, one line that names the problem, no traceback, and Ray never started.
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not ray.is_initialized()


@pytest.mark.parametrize("args", [["--trails", "3"], ["--scheduler", "pbt"], ["--trials", "0"], ["--workers-per-trial", "0"]])
def test_unknown_cli_option_or_value_exits_2(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["spaces/mnist.py", *args])
    err = capsys.readouterr().err
    # Exit code 2 and one line, like every other input error.
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert {"--trails": "unrecognized arguments: --trails", "--scheduler": "invalid choice: 'pbt'", "--trials": "must be an integer >= 1", "--workers-per-trial": "must be an integer >= 1"}[args[0]] in err


@pytest.mark.timeout(600)
def test_tiny_study_records_parent_and_nested_trial_runs(tiny_per_epoch_study):
    tmp_path, done = tiny_per_epoch_study
    assert done.returncode == 0, done.stdout + done.stderr

    # The terminal shows progress, the summary table and how to open the MLflow UI.
    store = tmp_path / "results" / "mlflow.db"
    assert "4/4 ended" in done.stdout
    assert "Pareto front of full-budget trials" in done.stdout and "Hypervolume" in done.stdout
    assert "Best trials by val_accuracy" in done.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{store} --host 127.0.0.1" in unfolded(done.stdout)
    # What it prints fits the 100-column window it printed to (a link stands whole on its own line);
    # the front's model column is shown.
    assert too_wide(done.stdout) == []
    assert "models:/smoke/" in done.stdout.split("Pareto front of full-budget trials")[1]
    # Links into that UI open the study's runs and the study run in its model-training view.
    assert "http://127.0.0.1:5000/#/experiments/" in done.stdout and "?workflowType=machine_learning" in done.stdout
    # Neither TensorFlow's nor Ray's start-up noise reaches the user.
    assert "cuda" not in (done.stdout + done.stderr).lower()
    assert "Traceback" not in done.stderr

    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # One finished parent run for the study, with its summary table.
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    run_link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning"
    assert run_link in done.stdout
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "summary.txt", "mnist.py"} <= artifacts
    assert parent.data.metrics["trials_total"] == 4
    assert 0 < parent.data.metrics["best_val_accuracy"] <= 1
    # One nested run per trial, with the searched parameters and per-epoch metrics by step.
    assert len(trials) == 4
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status in {"FINISHED", "KILLED"}
        assert {"learning_rate", "batch_size", "width", "augment", "final_sparsity"} <= set(run.data.params)
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        epochs = int(run.data.metrics["epoch"])
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))
        # The speed figure comes with its spread and CPU-time companion, every epoch.
        for metric in ("epoch_time_s", "epoch_time_cv", "epoch_cpu_s", "epoch_wall_s"):
            assert len(client.get_metric_history(run.info.run_id, metric)) == epochs
    # Two 1-CPU trials at a time on this 2-core machine class: each pinned to a core of its own.
    if len(os.sched_getaffinity(0)) == 2:
        assert {run.data.tags.get("pinned_cores") for run in trials} == {"0", "1"}
    for run in trials:
        # A trial that ran all its epochs also has its model metrics; a stopped one is KILLED.
        epochs = int(run.data.metrics["epoch"])
        if run.info.status == "FINISHED":
            assert epochs == 2
            for metric in ("params", "nonzero_params", "sparsity", "model_bytes_gzip", "inference_ms"):
                assert metric in run.data.metrics
        else:
            assert epochs < 2 and run.data.tags["stopped_early"] == "true"
            # A trial stopped early is never on the front and keeps no model.
            assert run.data.tags["on_front"] == "false" and "registered_model" not in run.data.tags

    # The parent run holds the front: table, plot, hypervolume plot and curve.
    assert {"pareto.csv", "pareto.png", "hypervolume.png"} <= artifacts
    assert client.get_metric_history(parent.info.run_id, "hypervolume")
    assert "reference_point" in parent.data.params
    # Every front trial has a registered MLflow model that loads with pyfunc and predicts, with
    # the signature and input example its trainable gave; the Keras and TFLite files go along.
    front = [r for r in trials if r.data.tags.get("on_front") == "true"]
    assert front and all(r.info.status == "FINISHED" for r in front)
    # The space's objectives do not use the deployed model: trials leave it out, and only the
    # front's trials have it measured, at the end.
    for run in trials:
        assert ("tflite_bytes" in run.data.metrics) == (run in front)
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    for run in front:
        uri = run.data.tags["registered_model"]
        assert uri.startswith("models:/smoke/")
        model = mlflow.pyfunc.load_model(uri)
        assert model.predict(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
        assert model.metadata.get_input_schema().inputs[0].shape == (-1, 28, 28, 1)
        assert model.metadata.saved_input_example_info is not None
        files = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / run.info.run_id)))
        assert (files / "artifacts" / "model.tflite").stat().st_size > 0
        assert keras.models.load_model(files / "artifacts" / "model.keras").output_shape == (None, 10)
    # The front's speed was measured again, alone: each front trial has its figure measured
    # alone beside the study's, and the study run the front recomputed on those figures.
    assert "The front measured again alone" in done.stdout
    for run in front:
        assert run.data.metrics["epoch_time_s_alone"] > 0
        assert run.data.tags["on_front_alone"] in {"true", "false"}
    assert "front_alone.csv" in artifacts and "front_alone_hypervolume" in parent.data.metrics
    # Aliases name the knee and the front's best by each objective, on the figures measured alone.
    registry = mlflow.MlflowClient()
    best = max(front, key=lambda r: r.data.metrics["val_accuracy"])
    assert registry.get_model_version_by_alias("smoke", "best-val_accuracy").run_id == best.info.run_id
    [knee] = [r for r in front if r.data.tags.get("knee_alone") == "true"]
    assert registry.get_model_version_by_alias("smoke", "knee").run_id == knee.info.run_id
    fastest_alone = min(front, key=lambda r: r.data.metrics["epoch_time_s_alone"])
    assert registry.get_model_version_by_alias("smoke", "best-epoch_time_s").run_id == fastest_alone.info.run_id
    assert mlflow.pyfunc.load_model("models:/smoke@knee").predict(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)

    # `search.pick` finds the fastest front model above an accuracy bound.
    picked = subprocess.run(
        [sys.executable, "-m", "search.pick", "smoke", "--results-dir", str(tmp_path / "results"), "--min", "val_accuracy=0", "--best", "epoch_time_s"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    fastest = min(front, key=lambda r: r.data.metrics["epoch_time_s"])
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.startswith(f"{fastest.info.run_name} ({fastest.data.tags['registered_model']}")


@pytest.mark.timeout(600)
def test_the_default_study_answers_with_the_fastest_recipe_to_each_target(tiny_study):
    import pandas as pd

    tmp_path, done = tiny_study
    assert done.returncode == 0, done.stdout + done.stderr
    # The terminal shows the front over recipes (each point with its epoch) and a line per target.
    assert "Front over recipes (every epoch of every trial" in done.stdout
    assert "Fastest recipe to each target" in done.stdout and "val_accuracy >= 0.97" in done.stdout
    assert "Traceback" not in done.stderr and "HDF5" not in done.stdout + done.stderr
    # It fits the 100-column window it printed to; each front recipe's model is on its row.
    assert too_wide(done.stdout) == []
    front_table = done.stdout.split("Front over recipes")[1].split("Hypervolume")[0]
    assert " model" in front_table and "models:/smoke/" in front_table

    store = tmp_path / "results" / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("smoke")
    [parent] = client.search_runs([experiment.experiment_id], filter_string="tags.role = 'study'")
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert parent.data.params["front"] == "recipes"
    # Each trial run has its training time after every epoch (step = epoch), stopped trials too.
    for run in trials:
        epochs = int(run.data.metrics["epoch"])
        times = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_time_s"))
        assert [step for step, _ in times] == list(range(1, epochs + 1))
        assert all(a < b for (_, a), (_, b) in zip(times, times[1:]))  # cumulative
    # Every epoch of every trial is a recipe in recipes.csv; pareto.csv has the epoch of each point.
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.csv", "pareto.png", "recipes.csv", "targets.csv"} <= artifacts
    recipes = pd.read_csv(client.download_artifacts(parent.info.run_id, "recipes.csv"))
    assert len(recipes) == sum(int(run.data.metrics["epoch"]) for run in trials)
    front = pd.read_csv(client.download_artifacts(parent.info.run_id, "pareto.csv"))
    assert {"recipe", "epoch", "val_accuracy", "train_time_s"} <= set(front.columns)
    assert set(front["recipe"]) == set(recipes.loc[recipes["on_front"], "recipe"])
    # The answer to a target the study reached is its fastest recipe reaching it, read from all recipes.
    target = float(recipes["val_accuracy"].median())
    reached = recipes[recipes["val_accuracy"] >= target].sort_values("train_time_s").iloc[0]
    picked = subprocess.run(
        [sys.executable, "-m", "search.pick", "smoke", "--results-dir", str(tmp_path / "results"),
         "--min", f"val_accuracy={target}", "--best", "train_time_s"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.startswith(f"{reached['trial']} after epoch {int(reached['epoch'])} (")
    assert f"train_time_s = {reached['train_time_s']:.6g}" in picked.stdout
    # That recipe's model is the model after its epoch: registered, tagged with it, and it loads with pyfunc.
    uri = picked.stdout.split("(", 1)[1].split(",", 1)[0]
    version = client.get_model_version("smoke", uri.rsplit("/", 1)[1])
    assert version.tags["epoch"] == str(int(reached["epoch"])) and version.source.endswith(f"/model-epoch-{int(reached['epoch'])}")
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    model = mlflow.pyfunc.load_model(uri)
    assert model.predict(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 28, 28, 1)
    # Its deployed figures were measured on that model, at that epoch of its trial's run.
    history = client.get_metric_history(version.run_id, "tflite_accuracy")
    assert [m.step for m in history if m.step == int(reached["epoch"])]


def test_results_api_reads_the_study_back_from_mlflow(tiny_study):
    from search.record.results import load_study

    tmp_path, done = tiny_study
    assert done.returncode == 0, done.stderr
    study = load_study("smoke", results_dir=tmp_path / "results")
    trials = study.trials
    # One row per trial with its status, typed parameters and final objectives.
    assert len(trials) == 4 and set(trials["status"]) <= {"finished", "stopped"}
    assert trials["learning_rate"].dtype == float and trials["batch_size"].dtype == int
    assert study.objectives == {"val_accuracy": "max", "train_time_s": "min"}
    # Stopped trials are flagged; every trial with a recipe on the front has a model URI.
    assert (trials["stopped_early"] == (trials["status"] == "stopped")).all()
    assert study.front_kind == "recipes" and study.front["model_uri"].str.startswith("models:/smoke/").all()
    # Recipes and the fastest per target read back.
    recipes = study.recipes()
    assert set(recipes["trial"]) == set(trials["trial"]) and recipes["on_front"].any()
    assert list(study.targets()["target"]) == [0.93, 0.95, 0.96, 0.97]
    # Per-epoch history, and the full-budget trials as an Optuna study.
    history = study.history(study.front.iloc[0]["trial"])
    assert list(history["epoch"]) == [1, 2]
    assert len(study.optuna_study().trials) == (trials["status"] == "finished").sum()


def test_links_into_the_mlflow_ui_open_the_model_training_view_of_a_local_store_or_a_server():
    from search.record.tracking import ui_links

    local = ui_links("sqlite:////somewhere/results/mlflow.db", "3", "abc")
    # A local store: the UI that `mlflow ui` (as printed) serves on 127.0.0.1:5000.
    assert local == {
        "runs": "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning",
        "run": "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning",
    }
    # A tracking server: its own address, whatever trailing slash it was given.
    assert ui_links("http://mlflow.internal:8080/", "7")["runs"] == "http://mlflow.internal:8080/#/experiments/7/runs?workflowType=machine_learning"
