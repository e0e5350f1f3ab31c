"""Check, in a real browser, that the links the launcher prints open a study where its runs are.

Starts the MLflow UI on a study's store (the `mlflow ui` command the launcher prints, on a free
port), opens each link `search.record.tracking.ui_links` gives (the study's runs table, the study
run) and the experiment's plain page in headless Chromium with a fresh profile each time, checks
what each page shows, and writes a screenshot of each:

    python -m benchmarks.mlflow_ui [--results-dir results] [--experiment mnist] [--out notebooks/screenshots]

Checked: the runs table (in the "Model training" view) lists the study run; the study run's page
names it and its trials (child runs); the chart view plots the study's metrics. The plain
experiment page (`#/experiments/<id>`) is shot too, to show what a link without the view opens.
Needs Chromium (`apt-get install chromium`); run it before each release of the README's
screenshots. Exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[1]
WAIT_S = 25  # the browser's virtual time for the page's scripts to load the runs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ui(tracking_uri: str, port: int) -> subprocess.Popen:
    """`mlflow ui` on the store, as the launcher prints it but on `port`; returns once it answers."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the MLflow UI did not answer on port {port} within 60 s")


def browse(chromium: str, url: str, screenshot: Path) -> str:
    """The page's DOM once its scripts ran, in a fresh profile; a screenshot of it too."""
    common = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900", f"--virtual-time-budget={WAIT_S * 1000}"]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium, *common, f"--user-data-dir={profile}", "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *common, f"--user-data-dir={profile}", f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    return dom


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mlflow_ui", description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--experiment", default="mnist")
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks" / "screenshots")
    options = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: Chromium is not installed (apt-get install chromium).", file=sys.stderr)
        return 2
    from search.record.results import load_study
    from search.record.tracking import ui_links

    study = load_study(options.experiment, results_dir=options.results_dir)
    experiment_id = study.client.get_run(study.run_id).info.experiment_id
    port = free_port()
    links = ui_links(study.tracking_uri, experiment_id, study.run_id, port=port)
    links["charts"] = links["runs"] + "&compareRunsMode=CHART"
    links["plain"] = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}"
    trials = list(study.trials["trial"])
    checks = {
        "runs": lambda dom: study.name in dom and "No data available" not in dom,
        "run": lambda dom: study.name in dom and sum(trial in dom for trial in trials) >= min(5, len(trials)),
        "charts": lambda dom: "Model metrics" in dom,
        "plain": lambda dom: True,  # shot to show what a link without the view opens
    }
    options.out.mkdir(parents=True, exist_ok=True)
    server = start_ui(study.tracking_uri, port)
    failed = 0
    try:
        for name, link in links.items():
            shot = options.out / f"mlflow-study-{name}.png"
            dom = browse(chromium, link, shot)
            ok = checks[name](dom)
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {link} -> {shot}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
