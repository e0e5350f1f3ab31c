"""The front measured again alone: the ranking on the new figures, and what the kit measures."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from search.record import front as front_module
from search.record.front import rank_alone

OBJECTIVES = {"val_accuracy": "max", "epoch_time_s": "min"}


def _study_front() -> front_module.Front:
    table = pd.DataFrame(
        {
            "trial": ["trial-001", "trial-002", "trial-003", "trial-004"],
            "status": ["finished"] * 4,
            "val_accuracy": [0.90, 0.80, 0.70, 0.60],
            "epoch_time_s": [1.0, 0.5, 0.3, 0.8],  # trial-004 is dominated in the study
            "ended_at": [1.0, 2.0, 3.0, 4.0],
        }
    )
    return front_module.analyse(table, OBJECTIVES)


def test_a_front_trial_slower_alone_leaves_the_front_and_the_aliases_follow():
    study = _study_front()
    assert list(study.points["trial"].sort_values()) == ["trial-001", "trial-002", "trial-003"]
    # trial-002 was fast only in the study's conditions: alone it is slower than trial-001,
    # which is also more accurate; trial-003 could not be measured again.
    again = rank_alone(
        study,
        OBJECTIVES,
        ["epoch_time_s"],
        {"trial-001": {"epoch_time_s": 0.9, "epoch_cpu_s": 0.9}, "trial-002": {"epoch_time_s": 1.1}},
        notes=["trial-003: not measured again (its config was not kept)."],
        seconds=12.0,
    )
    alone = again.front.table.set_index("trial")
    assert alone.loc["trial-002", "on_front"] == False  # noqa: E712 (numpy bool)
    assert alone.loc["trial-001", "on_front"] and alone.loc["trial-003", "on_front"]
    assert alone.loc["trial-003", "epoch_time_s"] == 0.3  # kept its study figure
    assert set(again.front.table["trial"]) == {"trial-001", "trial-002", "trial-003"}  # only the front

    changes = again.changes(study).set_index("trial")
    assert math.isclose(changes.loc["trial-002", "epoch_time_s change"], 1.1 / 0.5 - 1)
    assert math.isclose(changes.loc["trial-001", "epoch_time_s (alone)"], 0.9)
    assert np.isnan(changes.loc["trial-003", "epoch_time_s (alone)"])
    text = again.describe(study)
    assert "+120%" in text and "2 of 3 front trials stay non-dominated" in text
    assert "trial-003: not measured again" in text

    # The registry's aliases are chosen on the figures measured alone.
    named = front_module.aliases(again.front.table, OBJECTIVES)
    assert named["best-epoch_time_s"] == "trial-003" and named["best-val_accuracy"] == "trial-001"
    assert named["knee"] in {"trial-001", "trial-003"}


def test_the_kit_measures_a_trained_configuration_again_without_writing_or_reporting(tmp_path, tiny_config):
    from trainables.contract import TrialContext
    from trainables.mnist import train

    config = {**tiny_config, "epochs": 2, "final_sparsity": 0.5, "quantization": "dynamic"}
    reports = []
    final = train(config, TrialContext(report=reports.append, model_dir=str(tmp_path)))
    files = sorted(os.listdir(tmp_path))
    count = len(reports)

    measured = train.remeasure(config, TrialContext(report=reports.append, model_dir=str(tmp_path)), steps=10)
    assert set(measured) == set(train.remeasured_metrics)
    assert all(math.isfinite(value) and value > 0 for value in measured.values())
    assert measured["examples_per_s"] * measured["epoch_time_s"] == _approx(final["examples_per_s"] * final["epoch_time_s"])
    assert sorted(os.listdir(tmp_path)) == files and len(reports) == count  # nothing written or reported


def _approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-6)


def test_pruning_step_puts_a_model_in_its_last_epoch_of_the_schedule():
    """The re-measurement times the trial's last epoch, whose steps no longer update the pruning
    masks (a step during the ramp does more work)."""
    from trainables import pruning
    from trainables._keras import keras
    from trainables.models import build_model

    steps, epochs = 10, 3
    x = np.random.default_rng(0).random((256, 28, 28, 1), dtype=np.float32)
    y = np.arange(256) % 10

    def sparsity_after_four_steps(at: int | None) -> float:
        model = pruning.apply_pruning(build_model("mlp", width=32), final_sparsity=0.5, steps_per_epoch=steps, epochs=epochs)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if at is not None:
            pruning.set_pruning_step(model, at)
        model.fit(x, y, batch_size=64, epochs=1, callbacks=pruning.pruning_callbacks(), verbose=0)
        return pruning.kernel_sparsity(pruning.strip_pruning(model))

    assert sparsity_after_four_steps(None) > 0.05  # the ramp's first steps update the masks
    assert sparsity_after_four_steps((epochs - 1) * steps) == 0.0  # the last epoch's do not


def test_a_trial_leaves_out_the_deployed_model_the_study_does_not_need_and_finish_measures_it(tmp_path, tiny_config):
    from trainables.contract import TrialContext
    from trainables.mnist import train
    from trainables.quantization import DEPLOYED_METRICS

    config = {**tiny_config, "quantization": "dynamic"}
    everything = train(config, TrialContext(report=lambda m: None))
    skipped = train(config, TrialContext(report=lambda m: None, model_dir=str(tmp_path), needed=frozenset({"val_accuracy", "epoch_time_s"})))
    assert not set(DEPLOYED_METRICS) & set(skipped) and "model_bytes_gzip" in skipped
    assert (tmp_path / "model.keras").exists() and not (tmp_path / "model.tflite").exists()

    # For a trial that reaches the front, the study has the trainable measure it afterwards.
    finished = train.finish(config, TrialContext(model_dir=str(tmp_path)))
    assert set(finished) == set(DEPLOYED_METRICS) == set(train.finish_metrics)
    assert (tmp_path / "model.tflite").stat().st_size == finished["tflite_bytes"] == everything["tflite_bytes"]
    assert abs(finished["tflite_accuracy"] - skipped["val_accuracy"]) < 0.05
    assert np.load(tmp_path / "output_example.npy").shape == (5, 10)

    # A study whose objectives are the deployed model's gets them from every trial.
    needed = train(config, TrialContext(report=lambda m: None, needed=frozenset({"tflite_accuracy"})))
    assert set(DEPLOYED_METRICS) <= set(needed)


def test_a_trial_keeps_each_epochs_weights_and_finish_makes_the_servable_model_of_one(tmp_path, tiny_config):
    from trainables import pruning
    from trainables._keras import keras
    from trainables.contract import TrialContext
    from trainables.contract import epoch_model_dir
    from trainables.mnist import train

    config = {**tiny_config, "epochs": 3, "final_sparsity": 0.5}
    reports = []
    context = TrialContext(report=reports.append, model_dir=str(tmp_path), epoch_models=True, needed=frozenset({"val_accuracy"}))
    train(config, context)
    first = Path(epoch_model_dir(str(tmp_path), 1))
    assert sorted(p.name for p in first.iterdir()) == ["weights.npz"]  # an epoch's save is its weights only

    # For a recipe on the front: the model as it was after that epoch, pruning stripped, deployed.
    finished = train.finish(config, TrialContext(model_dir=str(first)))
    model = keras.models.load_model(first / "model.keras", compile=False)
    assert not any("prune" in layer.name for layer in model.layers)
    assert abs(finished["tflite_accuracy"] - reports[0]["val_accuracy"]) < 0.02
    assert np.load(first / "output_example.npy").shape == (5, 10) and (first / "model.tflite").exists()
    assert not (first / "weights.npz").exists()  # the registered model carries its weights once, in model.keras
    # ... and as it was then: the ramp of its sparsity not yet at the final model's.
    assert 0 < pruning.kernel_sparsity(model) < pruning.kernel_sparsity(keras.models.load_model(tmp_path / "model.keras", compile=False))


def test_a_recipe_trained_again_alone_stops_after_its_epoch_and_gives_its_training_time_each_run():
    from search.compute.remeasure import _retime_alone

    epochs_run = []

    def train(config, context):
        # A trainable under the contract: one report per epoch, polling should_stop.
        for epoch in range(1, config["epochs"] + 1):
            if context.should_stop():
                break
            epochs_run.append(epoch)
            context.report({"epoch": epoch, "train_time_s": 0.5 * epoch + config["offset"]})

    seconds = _retime_alone(train, {"epochs": 8, "offset": 0.25}, [3], 2, frozenset({"val_accuracy"}), 1, None, "")
    # Each run's training time after epoch 3, and each run stopped there, not at epoch 8.
    assert seconds == {3: [1.75, 1.75]}
    assert epochs_run == [1, 2, 3, 1, 2, 3]

    # Two recipes of one configuration (epochs 2 and 4) share each run, read at both epochs.
    epochs_run.clear()
    seconds = _retime_alone(train, {"epochs": 8, "offset": 0.25}, [2, 4], 2, frozenset({"val_accuracy"}), 1, None, "")
    assert seconds == {2: [1.25, 1.25], 4: [2.25, 2.25]}
    assert epochs_run == [1, 2, 3, 4, 1, 2, 3, 4]
