from pathlib import Path

import optuna
import pytest

from search.errors import SpaceError
from search.space import Choice
from search.space import Float
from search.space import Int
from search.space import SearchSpace
from search.space import load_space
from trainables.mnist import train

SPACES = sorted((Path(__file__).parents[1] / "spaces").glob("[!_]*.py"))


def space(**changes):
    fields = dict(
        name="t",
        trainable=train,
        params={"learning_rate": Float(1e-4, 1e-2, log=True)},
        objectives={"val_accuracy": "max"},
    )
    return SearchSpace(**{**fields, **changes})


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_space_file_loads_and_suggests_configs_its_trainable_accepts(path):
    loaded = load_space(path)
    study = optuna.create_study(directions=["maximize"] * len(loaded.objectives), sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        config = {**loaded.suggest(trial), **trial.params}
        # Every searched parameter that applies gets a value, and the trainable accepts the
        # whole config.
        unconditional = {name for name, domain in loaded.params.items() if domain.when is None}
        assert unconditional <= set(config)
        loaded.trainable.check_config(config)
        study.tell(trial, [0.0] * len(loaded.objectives))


def test_mnist_space_searches_what_the_product_promises():
    loaded = load_space(SPACES[0].parent / "mnist.py")
    # Learning rate on a log scale, batch size, width, augmentation and pruning sparsity.
    assert loaded.params["learning_rate"].log
    assert {"batch_size", "width", "augment", "final_sparsity"} <= set(loaded.params)
    # Accuracy (max) first, so early stopping follows it; training time so far (min) second,
    # over recipes: the training configuration that reaches an accuracy in the least time.
    assert list(loaded.objectives.items())[0] == ("val_accuracy", "max")
    assert loaded.objectives["train_time_s"] == "min"
    assert loaded.front == "recipes" and ("val_accuracy", 0.97) in loaded.recipe_targets


@pytest.mark.parametrize(
    "domain, message",
    [
        (Float(0.1, 0.01), "empty or inverted"),
        (Float(0.1, 0.1), "empty or inverted"),
        (Float(0.0, 0.1, log=True), "log-scale range needs `low > 0`"),
        (Int(8, 2), "empty or inverted"),
        (Choice([]), "at least one option"),
        (Choice("abc"), "takes a list"),
    ],
)
def test_impossible_ranges_are_rejected(domain, message):
    with pytest.raises(SpaceError, match=message):
        space(params={"width": domain})


def test_values_the_trainable_rejects_are_caught_at_load_time():
    # A learning rate range that starts at zero cannot train; it is caught before any trial.
    with pytest.raises(SpaceError, match="`learning_rate` = 0.0 is rejected"):
        space(params={"learning_rate": Float(0.0, 0.1)})
    # So is an option the trainable does not know.
    with pytest.raises(SpaceError, match="`architecture` = 'vit' is rejected"):
        space(params={"architecture": Choice(["mlp", "vit"])})
    # And a misspelt constant.
    with pytest.raises(SpaceError, match="constants"):
        space(constants={"data_sorce": "bundled"})


def test_unknown_objectives_and_directions_are_rejected():
    with pytest.raises(SpaceError, match="Unknown objective \\['val_acc'\\]"):
        space(objectives={"val_acc": "max"})
    with pytest.raises(SpaceError, match="direction must be 'max' or 'min'"):
        space(objectives={"val_accuracy": "maximize"})


def test_load_space_reports_unusable_files(tmp_path):
    with pytest.raises(SpaceError, match="Space file not found"):
        load_space(tmp_path / "missing.py")
    (tmp_path / "space.yaml").write_text("name: x\n")
    with pytest.raises(SpaceError, match="must be a Python file"):
        load_space(tmp_path / "space.yaml")
    (tmp_path / "broken.py").write_text("SPACE = (\n")
    with pytest.raises(SpaceError, match="broken.py:1: syntax error"):
        load_space(tmp_path / "broken.py")
    (tmp_path / "empty.py").write_text("suggest = 1\n")
    with pytest.raises(SpaceError, match="must define `SPACE = SearchSpace"):
        load_space(tmp_path / "empty.py")


def test_method_settings_are_validated():
    with pytest.raises(SpaceError, match="Unknown searcher 'grid'"):
        space(searcher="grid")
    with pytest.raises(SpaceError, match="Unknown scheduler 'pbt'"):
        space(scheduler="pbt")
    # A reference point must cover exactly the objectives.
    with pytest.raises(SpaceError, match="`reference_point` must give a value for each objective"):
        space(reference_point={"epoch_time_s": 5.0})


def test_conditional_parameters_appear_only_where_they_apply():
    conditional = space(
        params={
            "architecture": Choice(["mlp", "cnn"]),
            "kernel_size": Choice([3, 5], when={"architecture": "cnn"}),
            "optimizer": Choice(["sgd", "momentum", "adam"]),
            "momentum": Float(0.5, 0.95, when={"optimizer": ["momentum"]}),
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        conditional.suggest(trial)
        params = trial.params
        assert ("kernel_size" in params) == (params["architecture"] == "cnn")
        assert ("momentum" in params) == (params["optimizer"] == "momentum")
        train.check_config(params)  # the trainable accepts every such configuration
        seen.add((params["architecture"], params["optimizer"]))
        study.tell(trial, 0.0)
    assert len(seen) == 6  # both branches of both conditions were exercised


def test_conditions_must_name_an_earlier_choice_and_its_options():
    with pytest.raises(SpaceError, match="must be a Choice parameter declared before `kernel_size`"):
        space(params={"kernel_size": Choice([3, 5], when={"architecture": "cnn"}), "architecture": Choice(["mlp", "cnn"])})
    with pytest.raises(SpaceError, match="not among its options"):
        space(params={"architecture": Choice(["mlp", "cnn"]), "kernel_size": Choice([3, 5], when={"architecture": "vit"})})


def test_a_parameter_that_applies_only_under_a_condition_must_say_so():
    # The trainable refuses a CNN-only parameter on an MLP rather than ignoring it silently.
    with pytest.raises(SpaceError, match="`kernel_size` applies only when architecture is 'cnn'"):
        space(params={"architecture": Choice(["mlp", "cnn"]), "kernel_size": Choice([3, 5])})


def test_rung_objectives_are_validated_like_objectives():
    assert space(rung_objectives={"val_accuracy": "max"}).rung_objectives == {"val_accuracy": "max"}
    with pytest.raises(SpaceError, match="Unknown objective \\['val_acc'\\]"):
        space(rung_objectives={"val_acc": "max"})


def test_fixing_a_parameter_settles_the_parameters_conditional_on_it():
    compression = load_space(SPACES[0].parent / "mnist_compression.py")
    on = compression.fix({"distillation": True})
    assert on.constants["distillation"] is True and "distillation" not in on.params
    assert on.params["temperature"].when is None  # always applies now
    off = compression.fix({"distillation": False})
    assert "temperature" not in off.params and "distillation_weight" not in off.params
    # A list condition keeps the parameter when the fixed value is among its values.
    assert "final_sparsity" in compression.fix({"quantization": "int8"}).params
    assert "final_sparsity" not in compression.fix({"quantization": "qat"}).params


def test_capping_is_on_by_default_over_recipes_and_refused_where_it_cannot_judge():
    space = load_space(Path(__file__).parents[1] / "spaces" / "mnist.py")
    # The default space ranks recipes by training time: capping is on unless turned off.
    assert space.front == "recipes" and space.uses_capping
    assert not space.replace(capping=False).uses_capping
    # Over full-budget trials it is off, and asking for it is one clear error.
    per_epoch = space.replace(front="trials", targets=None, objectives={"val_accuracy": "max", "epoch_time_s": "min"})
    assert not per_epoch.uses_capping
    with pytest.raises(SpaceError, match="capping.*front=\"recipes\""):
        per_epoch.replace(capping=True)
    with pytest.raises(SpaceError, match="capping"):
        space.replace(capping="yes")
