"""The searcher's record reads in Optuna's own dashboard: objectives by name, every trial."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_mlflow_server import _free_port
from tests.test_mlflow_server import _get


@pytest.mark.timeout(300)
def test_optuna_dashboard_shows_a_studys_objectives_by_name_and_its_trials(tiny_study):
    tmp_path, done = tiny_study
    assert done.returncode == 0, done.stderr[-2000:]
    journal = tmp_path / "results" / "optuna.journal"
    # The command the launcher prints, on 127.0.0.1.
    assert f"optuna-dashboard {journal}" in " ".join(done.stdout.split())
    port = _free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).with_name("optuna-dashboard")), str(journal), "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                (summary,) = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert dashboard.poll() is None and time.monotonic() < deadline, dashboard.stderr.read()[-2000:] if dashboard.poll() is not None else "no answer"
                time.sleep(0.5)
        study = _get(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}")
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    # The study's objectives by name, as the space names them, and its 4 trials, all ended.
    assert study["objective_names"] == ["val_accuracy", "train_time_s"]
    assert summary["directions"] == ["maximize", "minimize"]
    assert len(study["trials"]) == 4 and {t["state"] for t in study["trials"]} <= {"Complete", "Pruned", "Fail"}
