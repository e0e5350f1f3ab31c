"""Command line: `python -m search.launch SPACE_FILE [options]` runs a study and summarises it."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from search import environment
from search.errors import DiskFull
from search.errors import SpaceError
from search.space import SCHEDULERS
from search.space import SEARCHERS
from search.space import SearchSpace
from search.space import load_space
from trainables.contract import EPOCH

EXIT_BAD_INPUT = 2
EXIT_ALL_FAILED = 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _assignment(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word such as `--set data_source=bundled`
    return key.strip(), value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m search.launch",
        description=(
            "Run a hyperparameter study: Optuna (TPE) suggests configurations, ASHA stops weak "
            "trials early, Ray Tune runs the trials, MLflow records everything. Options left out "
            "take the values the space file sets."
        ),
        epilog="Example: python -m search.launch spaces/mnist.py --trials 8 --max-epochs 4",
    )
    parser.add_argument("space_file", type=Path, help="a space file defining SPACE = SearchSpace(...)")
    budget = parser.add_argument_group("budget")
    budget.add_argument("--trials", type=_positive_int, metavar="N", help="number of trials")
    budget.add_argument("--max-epochs", type=_positive_int, metavar="N", help="epochs of a trial never stopped early")
    budget.add_argument("--grace-period", type=_positive_int, metavar="N", help="epochs before a trial may be stopped early")
    budget.add_argument(
        "--time-budget",
        type=_positive_float,
        metavar="SECONDS",
        help="stop the study after this many seconds; trials still running are cut off",
    )
    budget.add_argument("--seed", type=int, metavar="N", help="seed of the searcher and the trials")
    method = parser.add_argument_group("method")
    method.add_argument("--searcher", choices=SEARCHERS, help="tpe, nsga2 or random (Optuna samplers), or variant (Ray Tune's random search); default: the space's, else tpe")
    method.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="early stopping: mo-asha (default with several objectives), asha (on the first objective), none",
    )
    method.add_argument(
        "--warm-start",
        action="append",
        metavar="EXPERIMENT[/STUDY]",
        help="start the searcher from the trials of earlier studies in the same MLflow store: every study of an "
        "experiment, or one (repeatable); trials that do not fit this space are skipped and counted",
    )
    method.add_argument(
        "--warm-start-front",
        action="store_true",
        help="with --warm-start: run the earlier fronts' configurations that fit this space first",
    )
    budget.add_argument("--max-retries", type=int, metavar="N", help="start a failed trial again up to N times (default 0)")
    resources = parser.add_argument_group("resources")
    resources.add_argument("--max-concurrent", type=_positive_int, metavar="N", help="trials running at once")
    resources.add_argument("--cpus-per-trial", type=_non_negative_float, metavar="X", help="CPUs reserved per trial")
    resources.add_argument("--gpus-per-trial", type=_non_negative_float, metavar="X", help="GPUs reserved per trial (fractions allowed, e.g. 0.25 packs 4 trials on a GPU)")
    resources.add_argument("--workers-per-trial", type=_positive_int, metavar="N", help="train each trial on N Ray Train workers (MultiWorkerMirroredStrategy), sharing its CPUs and GPUs")
    resources.add_argument("--gpu-memory-mb", type=_positive_int, metavar="MB", help="GPU memory a trial process may use per GPU (default: its fraction of the GPU, or grow as needed)")
    resources.add_argument("--address", metavar="HOST:PORT", help="run on an existing Ray cluster (see `ray start --head`); the results directory and MLflow store must be reachable from every node")
    recording = parser.add_argument_group("recording")
    recording.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default: the space's name)")
    recording.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: sqlite store in the results directory)")
    recording.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR", help="MLflow store, artifacts and Ray trial directories (default: ./results)")
    parser.add_argument(
        "--set",
        dest="overrides",
        type=_assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a constant passed to every trial, or fix a searched parameter, e.g. --set data_source=bundled (repeatable)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="carry on the latest interrupted study of this space (same options as the first run)",
    )
    parser.add_argument(
        "--no-remeasure",
        dest="remeasure",
        action="store_false",
        help="skip measuring the front's speed again alone once the trials end",
    )
    parser.add_argument("--verbose", action="store_true", help="show Ray Tune's full status table")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser


def apply_options(space: SearchSpace, options: argparse.Namespace) -> SearchSpace:
    """The space with command-line options applied (validated again)."""
    fields = {
        "num_samples": options.trials,
        "max_epochs": options.max_epochs,
        "grace_period": options.grace_period,
        "seed": options.seed,
        "max_concurrent": options.max_concurrent,
        "cpus_per_trial": options.cpus_per_trial,
        "gpus_per_trial": options.gpus_per_trial,
        "workers_per_trial": options.workers_per_trial,
        "gpu_memory_mb": options.gpu_memory_mb,
        "searcher": options.searcher,
        "scheduler": options.scheduler,
        "max_retries": options.max_retries,
        "time_budget_s": options.time_budget,
    }
    changes: dict[str, Any] = {key: value for key, value in fields.items() if value is not None}
    if changes.get("max_epochs") is not None and options.grace_period is None:
        changes["grace_period"] = min(space.grace_period, changes["max_epochs"])
    if options.overrides:
        space = space.fix(dict(options.overrides))
    return space.replace(**changes) if changes else space


def _check_results_dir(results_dir: Path) -> None:
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = results_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise SpaceError(f"Results directory {results_dir} is not writable: {error.strerror}.") from error


def _check_tracking_uri(tracking_uri: str | None) -> None:
    """Fail before Ray starts if the MLflow store cannot be reached."""
    if tracking_uri is None:
        return  # the sqlite store in the (checked) results directory
    if tracking_uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=5).close()
        except OSError as error:
            reason = getattr(error, "reason", error)
            raise SpaceError(
                f"MLflow tracking URI {tracking_uri} is unreachable ({reason}); start the server "
                "or leave out --tracking-uri to use the local store."
            ) from error
        return
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise SpaceError(f"MLflow tracking URI {tracking_uri}: folder {folder} does not exist.")
        return
    raise SpaceError(
        f"Unsupported MLflow tracking URI {tracking_uri!r}; use sqlite:///ABSOLUTE/PATH.db or an "
        "http(s):// MLflow server."
    )


def _print_interrupted(
    study_name: str, space: SearchSpace, options: argparse.Namespace, argv: list[str] | None
) -> None:
    """After Ctrl-C: what ended before the interruption, and the command that carries on."""
    from search.record import terminal
    from search.record.results import load_study
    from search.record.tables import format_table

    study = load_study(
        options.experiment or space.name,
        study=study_name,
        tracking_uri=options.tracking_uri,
        results_dir=options.results_dir,
    )
    trials = study.trials
    shown = [c for c in ["trial", "status", *space.objectives, EPOCH, *space.params] if c in trials]
    print(f"\nStudy {study_name} interrupted. Trials so far (cut-off ones are KILLED in MLflow):")
    print(format_table(trials[shown], width=terminal.width()) if not trials.empty else "(none)")
    print(terminal.command("Resume it with:  " + _resume_command(argv)))


def _resume_command(argv: list[str] | None) -> str:
    """The command that carries on the study this launch ran."""
    import shlex

    args, given = [], list(sys.argv[1:] if argv is None else argv)
    while given:  # a resumed study keeps what it started from: no --warm-start again
        arg = given.pop(0)
        if arg == "--warm-start" and given:
            given.pop(0)
        elif arg not in ("--resume", "--warm-start-front") and not arg.startswith("--warm-start="):
            args.append(arg)
    return "python -m search.launch " + shlex.join([*args, "--resume"])


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    environment.prepare(options.address)  # before anything imports Ray, which reads it
    try:
        space = apply_options(load_space(options.space_file), options)
        _check_results_dir(options.results_dir)
        _check_tracking_uri(options.tracking_uri)
    except SpaceError as error:
        if options.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from search.record.terminal import wrap
    from search.study import StudyInterrupted
    from search.study import run_study

    print(
        wrap(
            f"Study '{space.name}': {space.num_samples} trials of up to {space.max_epochs} epochs, "
            f"{space.max_concurrent} at a time, objectives {dict(space.objectives)}"
            + (f", early stopping on {dict(space.rung_objectives)}" if space.rung_objectives else "")
        ),
        flush=True,
    )
    try:
        result = run_study(
            space,
            results_dir=options.results_dir,
            experiment=options.experiment,
            tracking_uri=options.tracking_uri,
            space_file=options.space_file,
            verbose=options.verbose,
            resume=options.resume,
            address=options.address,
            remeasure_front=options.remeasure,
            warm_start=options.warm_start,
            warm_start_front=options.warm_start_front,
        )
    except SpaceError as error:  # e.g. --resume with nothing to resume
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StudyInterrupted as interrupted:
        _print_interrupted(str(interrupted), space, options, argv)
        return 128 + interrupted.signal_number  # 130 after Ctrl-C, 143 after SIGTERM
    except Exception as error:  # a full disk or a lost tracking server stops the study resumably
        from search.record.tracking import server_gone

        full, gone = DiskFull.find(error, (str(options.results_dir.resolve()),)), server_gone(error)
        if full is None and gone is None:
            raise
        what = (
            f"{full}. The study stopped; what it measured is kept. Make room there, then carry it on with:"
            if full is not None
            else f"the MLflow tracking server {gone} did not answer through MLflow's retries. The study stopped; what the server "
            "recorded is kept and the rest is measured again. Once the server is back, carry it on with:"
        )
        print(f"error: {what}", file=sys.stderr)
        print(f"  {_resume_command(argv)}", file=sys.stderr)
        return EXIT_ALL_FAILED
    table = result.trials
    counts = table["status"].value_counts() if not table.empty else {}
    minutes, seconds = divmod(int(result.wall_time_s), 60)
    print(
        "\n"
        + wrap(
            f"Study {result.name} ended in {minutes}m {seconds:02d}s: {len(table)} trials "
            f"({counts.get('finished', 0)} finished, {counts.get('stopped', 0)} stopped early, "
            f"{counts.get('failed', 0)} failed"
            + (f", {counts['cut off']} cut off by the time budget" if counts.get("cut off") else "")
            + ")."
        )
    )
    _print_fronts(result, space)
    _print_record(result)
    if table.empty and space.num_samples > 0:
        print("error: no trial ran; see the messages above (e.g. Ray could not start the trial processes).", file=sys.stderr)
        return EXIT_ALL_FAILED
    if not table.empty and (table["status"] == "failed").all():
        print("error: every trial failed; see the 'error' tag of each trial run.", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0


def _print_record(result: Any) -> None:
    """Where the study is recorded: the MLflow UI's command and links, Optuna's dashboard. Each
    link is printed whole, on a line of its own."""
    from search.record.terminal import command
    from search.record.tracking import ui_command
    from search.record.tracking import ui_links

    print(f"\nMLflow: experiment '{result.experiment}', study run {result.parent_run_id}")
    print("Open the MLflow UI:")
    print(command(f"  {ui_command(result.tracking_uri)}"))
    links = ui_links(result.tracking_uri, result.experiment_id, result.parent_run_id)
    print(f"then the study's runs (expand the study run for its trials):\n  {links['runs']}")
    print(f"and the study run (parameters, metrics, pareto.png, summary):\n  {links['run']}")
    if result.optuna_journal:
        print("Open the searcher's record (Pareto front, hypervolume history, parameter importance):")
        print(command(f"  optuna-dashboard {result.optuna_journal}"))


def _print_fronts(result: Any, space: Any) -> None:
    """The study's outcome on the terminal: early stops, the best trials, the front (over trials
    or over recipes), the front measured again alone, and the fastest recipe to each target."""
    from search.methods.recipes import RECIPE
    from search.record.front import describe
    from search.record.front import describe_targets
    from search.record.tables import format_table
    from search.record.terminal import width
    from search.record.terminal import wrap

    table, columns = result.trials, width()
    if result.stopped_at_rung:
        stops = ", ".join(f"{n} at epoch {rung}" for rung, n in result.stopped_at_rung.items())
        print(wrap(f"Stopped early: {stops}."))
    print("\n" + wrap(f"Best trials by {space.primary_metric} ({space.primary_mode}), full-budget trials first:"))
    print(format_table(table, rows=10, width=columns, more_in="summary.csv"))
    if result.recipes is not None:
        print("\n" + wrap(f"Front over recipes (every epoch of every trial, {len(result.recipes)} recipes) over {list(space.objectives)} (* = knee):"))
        print(describe(result.front, space.objectives, list(space.params), result.model_uris, key=RECIPE, width=columns))
    else:
        print("\n" + wrap(f"Pareto front of full-budget trials over {list(space.objectives)} (* = knee):"))
        print(describe(result.front, space.objectives, list(space.params), result.model_uris, width=columns))
    if result.targets is not None and not result.targets.empty:
        print("\nFastest recipe to each target (the least training time to reach it):")
        print(describe_targets(result.targets, result.model_uris, set(result.front.points[RECIPE]), width=columns))
    if result.remeasured is not None:
        print("\n" + wrap("The front measured again alone, one configuration at a time (* = knee on those figures; the registry's aliases follow them):"))
        print(result.remeasured.describe(result.front, width=columns))
    if result.comparison is not None:
        print("\n" + wrap("This study beside the others of its experiment and those it started from (hypervolumes against one reference point; studies.png on the study run):"))
        print(format_table(result.comparison.drop(columns="experiment"), rows=10, width=columns, more_in="studies.csv"))


if __name__ == "__main__":
    sys.exit(main())
