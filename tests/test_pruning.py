import pytest

from trainables.contract import TrialContext
from trainables.mnist import train
from trainables.pruning import pruning_schedule_steps


@pytest.mark.parametrize("steps_per_epoch, epochs", [(8, 1), (8, 3), (31, 5), (1, 2)])
def test_schedule_reaches_target_before_the_last_epoch(steps_per_epoch, epochs):
    end_step, frequency = pruning_schedule_steps(steps_per_epoch, epochs)
    # The last pruning step is a pruning turn, so the target sparsity is actually applied ...
    assert end_step % frequency == 0 and end_step > 0
    # ... and it comes before the last epoch starts (or within the only epoch).
    assert end_step <= steps_per_epoch * max(1, epochs - 1)


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_trained_model_has_the_target_sparsity(tiny_config, target):
    final = train({**tiny_config, "epochs": 2, "final_sparsity": target}, TrialContext(report=lambda m: None))
    # Measured on the stripped model's kernels, within 0.02 of the target.
    assert final["sparsity"] == pytest.approx(target, abs=0.02)
    # Fewer non-zero parameters remain than the dense model has.
    assert final["nonzero_params"] < final["params"] * (1 - target / 2)


def test_unpruned_model_is_dense(tiny_config):
    final = train(tiny_config, TrialContext(report=lambda m: None))
    # Without pruning, trained kernels have (essentially) no exact zeros.
    assert final["sparsity"] < 0.01
