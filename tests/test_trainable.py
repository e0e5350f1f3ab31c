import math

import numpy as np
import pytest

from trainables.contract import TrialContext
from trainables.mnist import EPOCH_METRICS
from trainables.mnist import FINAL_METRICS
from trainables.metrics import steady_state
from trainables.mnist import train


def test_train_reports_every_epoch_and_returns_the_final_metrics(tiny_config):
    reports = []
    final = train({**tiny_config, "epochs": 2}, TrialContext(report=reports.append))
    # One report per epoch, numbered from 1.
    assert [r["epoch"] for r in reports] == [1, 2]
    # Every report carries the per-epoch metrics; only the last one the model metrics too.
    for report in reports:
        assert set(EPOCH_METRICS) <= set(report)
    assert not set(FINAL_METRICS) & set(reports[0])
    assert set(FINAL_METRICS) <= set(reports[-1])
    # The last report says it is the last.
    assert [r.get("complete", False) for r in reports] == [False, True]
    # The return value is the last report.
    assert final == reports[-1]


def test_timing_metrics_are_consistent(tiny_config):
    reports = []
    train({**tiny_config, "epochs": 2}, TrialContext(report=reports.append))
    first, second = reports
    # Steady-state epoch time excludes the first epoch's graph tracing, reported apart.
    assert first["warmup_s"] > 0 and "warmup_s" not in second
    for report in reports:
        assert report["epoch_time_s"] > 0
        assert report["examples_per_s"] == pytest.approx(512 / report["epoch_time_s"])
    # Cumulative training time grows and includes the warm-up.
    assert second["train_time_s"] > first["train_time_s"] >= first["epoch_time_s"]
    # Beside the robust wall figure: its spread, the CPU time of the steps, and the plain wall time.
    for report in reports:
        assert report["epoch_time_cv"] >= 0 and report["epoch_cpu_s"] > 0
        assert report["epoch_wall_s"] > 0
    assert second["train_time_s"] == pytest.approx(first["epoch_wall_s"] + second["epoch_wall_s"])


def test_the_steady_state_epoch_time_ignores_the_warm_up_and_a_few_slow_steps():
    # Ten steps of 0.1 s after a 2 s first step (graph tracing): 10 x 0.1 s, spread 0.
    steady, spread = steady_state([2.0] + [0.1] * 9, skip=1)
    assert steady == pytest.approx(1.0) and spread == pytest.approx(0.0)
    # Two steps slowed by a neighbour or a pause: the epoch's wall time takes all of it, the
    # median none; the spread says the steps were uneven.
    steps = [0.1] * 8 + [0.6, 0.9]
    steady, spread = steady_state(steps)
    assert sum(steps) == pytest.approx(2.3) and steady == pytest.approx(1.0)
    assert spread == pytest.approx(np.std(steps, ddof=1) / np.mean(steps))
    # Degenerate epochs: one step is its own time; no step is no time.
    assert steady_state([0.4], skip=1) == (pytest.approx(0.4), 0.0)
    assert steady_state([]) == (0.0, 0.0)


def test_model_metrics_are_measured(tiny_config):
    final = train(tiny_config, TrialContext(report=lambda m: None))
    # An MLP 784-16-16-10 has (784*16+16) + (16*16+16) + (16*10+10) parameters.
    assert final["params"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert 0 < final["model_bytes_gzip"] < 4 * final["params"] + 100_000
    assert 0 < final["inference_ms"] < 1000
    assert 0 <= final["val_accuracy"] <= 1 and math.isfinite(final["val_loss"])


def test_cnn_learns_the_bundled_digits(tiny_config):
    final = train(
        {**tiny_config, "architecture": "cnn", "width": 16, "train_examples": 2000, "epochs": 3},
        TrialContext(report=lambda m: None),
    )
    # Three epochs on 2,000 real digits is far above the 10% of guessing.
    assert final["val_accuracy"] > 0.8


@pytest.mark.parametrize(
    "change, message",
    [
        ({"learning_rate": 0}, "`learning_rate` must be positive"),
        ({"batch_size": -8}, "`batch_size` must be positive"),
        ({"final_sparsity": 1.0}, "`final_sparsity` must be in"),
        ({"architecture": "rnn"}, "`architecture` must be one of"),
        ({"widht": 32}, "Unknown config keys \\['widht'\\]"),
    ],
)
def test_invalid_configs_are_rejected_before_training(tiny_config, change, message):
    with pytest.raises(ValueError, match=message):
        train({**tiny_config, **change})


def test_training_ends_mid_epoch_when_asked_to_stop(tiny_config):
    reports, polls = [], []

    def should_stop():
        polls.append(1)
        return len(polls) > 3  # after the fourth batch of the first epoch

    final = train({**tiny_config, "epochs": 3}, TrialContext(report=reports.append, should_stop=should_stop))
    # No epoch completes, so nothing is reported, and training stops at once (one poll per batch).
    assert reports == [] and final == {}
    assert len(polls) == 4


def test_diverging_training_raises_a_clear_error(tiny_config):
    # A learning rate this large sends the loss to NaN/inf within the first epoch.
    with pytest.raises(FloatingPointError, match="Training diverged: loss became"):
        train({**tiny_config, "learning_rate": 1e12, "epochs": 2}, TrialContext(report=lambda m: None))


def test_training_continues_from_its_checkpoint(tiny_config, tmp_path):
    config = {**tiny_config, "train_examples": 2000}
    saving = {"checkpoint_dir": str(tmp_path / "ckpt")}
    first = []
    train({**config, "epochs": 2}, TrialContext(report=first.append, **saving))
    # Asked for 4 epochs with the same checkpoint directory, it picks up after epoch 2 ...
    resumed = []
    train({**config, "epochs": 4}, TrialContext(report=resumed.append, **saving))
    # (epoch 2's report comes again first: it may never have reached a recorder before)
    assert [r["epoch"] for r in resumed] == [2, 3, 4]
    assert resumed[0] == {**first[-1], "resumed_from_epoch": 2}
    # ... with the trained weights and optimizer state: better than a fresh model's first epoch.
    fresh = train({**tiny_config, "train_examples": 2000, "epochs": 1}, TrialContext(report=lambda m: None))
    assert resumed[1]["val_loss"] < fresh["val_loss"]


def test_a_checkpoint_restores_the_weights_and_the_optimizer_state_exactly(tmp_path):
    from trainables._keras import keras
    from trainables.metrics import EpochCheckpoint

    def model():
        built = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.BatchNormalization(), keras.layers.Dense(3)])
        built.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return built

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)
    trained = model()
    trained.fit(x, y, epochs=2, verbose=0)
    EpochCheckpoint(trained, str(tmp_path)).save(epochs_done=2, report={"epoch": 2, "val_loss": 0.5})
    # A crash in the middle of the next save leaves a partial file, not a broken checkpoint.
    (tmp_path / "checkpoint.npz.partial").write_bytes(b"torn")

    fresh = model()
    checkpoint = EpochCheckpoint(fresh, str(tmp_path))
    assert checkpoint.restore() == 2 and checkpoint.last_report == {"epoch": 2, "val_loss": 0.5}
    for restored, saved in zip([*fresh.get_weights(), *fresh.optimizer.variables], [*trained.get_weights(), *trained.optimizer.variables]):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(saved))
    assert int(fresh.optimizer.iterations.numpy()) == int(trained.optimizer.iterations.numpy()) > 0
    # ... so the next step is the one the trained model would have taken.
    trained.fit(x, y, epochs=1, shuffle=False, verbose=0)
    fresh.fit(x, y, epochs=1, shuffle=False, verbose=0)
    for after, expected in zip(fresh.get_weights(), trained.get_weights()):
        np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_model_is_refused_with_what_to_do(tmp_path):
    from trainables._keras import keras
    from trainables.metrics import EpochCheckpoint

    def model(width):
        built = keras.Sequential([keras.Input((6,)), keras.layers.Dense(width), keras.layers.Dense(3)])
        built.compile(optimizer="adam", loss="mse")
        return built

    EpochCheckpoint(model(4), str(tmp_path)).save(epochs_done=1, report={"epoch": 1})
    with pytest.raises(ValueError, match="another model or optimizer.*remove it"):
        EpochCheckpoint(model(5), str(tmp_path)).restore()


def test_a_stop_asked_for_by_the_time_an_epoch_is_reported_ends_training_there(tiny_config, monkeypatch):
    from trainables._keras import keras

    validations = []
    evaluate = keras.Model.evaluate
    monkeypatch.setattr(keras.Model, "evaluate", lambda self, *a, **k: validations.append(1) or evaluate(self, *a, **k))
    reports = []
    final = train({**tiny_config, "epochs": 3}, TrialContext(report=reports.append, should_stop=lambda: len(reports) >= 1))
    # Epoch 1 reported, and nothing of epoch 2 begun: not its first batch, nor the validation
    # pass Keras runs for an epoch stopped midway.
    assert [r["epoch"] for r in reports] == [1] and final == reports[0]
    assert len(validations) == 1


def test_every_epoch_trains_on_every_example_once_in_a_new_order():
    from trainables import kit
    from trainables._keras import keras
    from trainables._keras import tf
    from trainables.data import Split

    seen: list[list[int]] = []

    class Numbered(kit.KerasTask):
        """30 training examples whose one feature is their number; batches of 8 (the last of 6)."""

        def load_data(self, config):
            x, y = np.arange(40, dtype="float32")[:, None], np.arange(40) % 2
            return Split(x[:30], y[:30], x[30:], y[30:])

        def build_model(self, config, input_shape, num_classes):
            return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(num_classes)])

        def augmentation(self, config):  # runs on every training batch the input pipeline makes
            def record(batch):
                seen.append(batch.numpy().ravel().astype(int).tolist())
                return batch

            return lambda batch, training: tf.ensure_shape(tf.py_function(record, [batch], tf.float32), batch.shape)

    reports, polled_in_epoch = [], []  # `should_stop` is polled after every batch and every report
    context = TrialContext(report=reports.append, should_stop=lambda: polled_in_epoch.append(len(reports) + 1) and False)
    kit.KerasTrainable(Numbered())({"epochs": 3, "batch_size": 8}, context)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert [polled_in_epoch.count(epoch) for epoch in (1, 2, 3)] == [4, 5, 5]  # 4 batches (+1 report before)
    # The pipeline may read ahead; the first 4 batches made are epoch 1's, the next 4 epoch 2's, ...
    epochs = [[number for batch in seen[4 * e : 4 * e + 4] for number in batch] for e in range(3)]
    assert [sorted(order) for order in epochs] == [list(range(30))] * 3
    assert [len(batch) for batch in seen[:4]] == [8, 8, 8, 6]
    assert len({tuple(order) for order in epochs}) == 3  # reshuffled every epoch
