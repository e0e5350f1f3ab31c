"""Running on a Ray cluster: every node must see the study's results directory and MLflow store.

Trials write their models and checkpoints into the results directory on whichever node runs
them, and the study reads them back on the head node; so a study on a cluster needs that
directory on a shared filesystem (the same path on every node), and an MLflow store every node
reaches: a server URL, or a sqlite file on the shared path. `check_shared` asks each live node
before the first trial starts, and fails with the nodes and the fix otherwise.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from search.errors import SpaceError


def _probe(marker: str, token: str, store: str | None, server: str | None) -> list[str]:
    """On one node: what it cannot reach (empty when all is well)."""
    import os
    import urllib.request

    problems = []
    try:
        with open(marker) as file:
            seen = file.read()
        if seen != token:
            problems.append(f"sees another {marker} (not the same filesystem)")
        probe = f"{marker}.{os.getpid()}"
        with open(probe, "w") as file:
            file.write("")
        os.remove(probe)
    except OSError as error:
        problems.append(f"cannot read and write the results directory ({error.strerror}: {error.filename})")
    if store is not None and not os.path.isdir(os.path.dirname(store)):
        problems.append(f"does not see the folder of the MLflow store {store}")
    if server is not None:
        try:
            urllib.request.urlopen(server.rstrip("/") + "/health", timeout=5).close()
        except OSError as error:
            problems.append(f"cannot reach the MLflow server {server} ({getattr(error, 'reason', error)})")
    return problems


def auth_mode() -> str:
    """"token" when this machine has a Ray token (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or
    `~/.ray/auth_token`, which `ray start --head` writes), else "disabled"."""
    import os

    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return "token"
    return "token" if (Path.home() / ".ray" / "auth_token").is_file() else "disabled"


def connect(address: str, **init_kwargs: Any) -> None:
    """Join the Ray cluster at `address`, or raise `SpaceError` saying how to start one."""
    import socket

    import ray

    how = (
        "Start one with `ray start --head --port=6379` on the head node (and "
        "`ray start --address=HEAD:6379` on the others), then pass --address HEAD:6379. With token "
        "authentication (the default of `ray start`), this machine needs the cluster's token: "
        "`ray get-auth-token` on the head node, then RAY_AUTH_TOKEN=... here."
    )
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():  # Ray waits for an unreachable address for ever: ask first
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as error:
            raise SpaceError(f"Cannot connect to a Ray cluster at {address!r} ({error.strerror or error}). {how}") from error
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SpaceError(f"Cannot connect to a Ray cluster at {address!r} ({str(error).splitlines()[0]}). {how}") from error


def check_shared(results_dir: Path, tracking_uri: str) -> int:
    """Ask every live node of the connected Ray cluster whether it reaches `results_dir` and
    the MLflow store at `tracking_uri`; return the number of nodes, or raise `SpaceError`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    marker = Path(results_dir) / f".shared-check-{token[:8]}"
    marker.write_text(token)
    store = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
    server = tracking_uri if tracking_uri.startswith(("http://", "https://")) else None
    probe = ray.remote(num_cpus=0)(_probe)
    nodes: list[dict[str, Any]] = [node for node in ray.nodes() if node.get("Alive")]
    try:
        answers = ray.get(
            [
                probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
                    str(marker), token, store, server
                )
                for node in nodes
            ],
            timeout=120,
        )
    finally:
        marker.unlink(missing_ok=True)
    problems = [
        f"node {node.get('NodeManagerAddress', node['NodeID'])} {problem}"
        for node, found in zip(nodes, answers)
        for problem in found
    ]
    if problems:
        raise SpaceError(
            "On a Ray cluster every node must reach the results directory and the MLflow store: "
            + "; ".join(problems)
            + f". Put --results-dir on a filesystem mounted at {Path(results_dir)} on every node, "
            "and use an MLflow server (--tracking-uri http://HOST:PORT) or a sqlite store on that path."
        )
    return len(nodes)


def check_resources(space: Any) -> str | None:
    """Refuse, before any trial starts, a trial no node of the connected Ray cluster can ever
    hold (Ray would wait for it for ever, printing an autoscaler error every half minute).

    A one-worker trial needs its `cpus_per_trial` and `gpus_per_trial` on one node; a
    multi-worker trial needs each worker's share on some node and the whole request in the
    cluster (see `search.compute.devices.run_workers`). A cluster with an autoscaler is not refused: it
    may add a node that fits.

    Returns:
        A note for the terminal when the cluster autoscales, or when fewer than
        `max_concurrent` trials fit at once (the others wait); else None.

    Raises:
        SpaceError: one line naming what was asked, what the cluster has, and the fix.
    """
    import ray

    from search.compute.devices import DRIVER_CPUS

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    cpus, gpus, workers = float(space.cpus_per_trial), float(space.gpus_per_trial), int(space.workers_per_trial)
    if workers == 1:
        need = {"CPU": cpus, "GPU": gpus}
    else:
        need = {"CPU": (cpus - DRIVER_CPUS) / workers, "GPU": gpus / workers}
    fits = [node for node in nodes if all(node.get(k, 0.0) >= v - 1e-9 for k, v in need.items())]
    total = {k: sum(node.get(k, 0.0) for node in nodes) for k in ("CPU", "GPU")}
    largest = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in ("CPU", "GPU")}
    have = f"this Ray cluster has {len(nodes)} node{'s' * (len(nodes) != 1)} with {total['CPU']:g} CPUs and {total['GPU']:g} GPUs in all"
    problem = None
    if gpus > 0 and total["GPU"] == 0:
        problem = f"gpus_per_trial={gpus:g} (--gpus-per-trial) asks for a GPU, but {have}; drop it, or add a GPU node"
    elif workers > 1 and (total["CPU"] < cpus - 1e-9 or total["GPU"] < gpus - 1e-9):
        problem = (
            f"A trial of {workers} workers asks for {cpus:g} CPUs and {gpus:g} GPUs at once, but {have}; "
            "ask for less (--cpus-per-trial, --gpus-per-trial, --workers-per-trial), or add nodes"
        )
    elif not fits:
        what = "Each of its workers" if workers > 1 else "A trial"
        problem = (
            f"{what} needs {need['CPU']:g} CPUs and {need['GPU']:g} GPUs on one node, but the largest node of "
            f"this Ray cluster has {largest['CPU']:g} CPUs and {largest['GPU']:g} GPUs; "
            "ask for at most that per trial (--cpus-per-trial, --gpus-per-trial)"
            + ("" if workers > 1 else ", or split the trial over workers (--workers-per-trial)")
        )
    if problem is not None:
        if _autoscales():
            return f"This Ray cluster autoscales: the study waits until it adds what a trial needs ({problem.split(', but ')[0]})."
        raise SpaceError(problem + ".")
    if workers == 1:
        # Whole trials per node; `cpus_per_trial` > 0 (checked by the space), so some need is > 0.
        at_once = sum(int(min(node.get(k, 0.0) / v for k, v in need.items() if v > 0) + 1e-9) for node in nodes)
        if at_once < space.max_concurrent:
            return (
                f"This Ray cluster holds {at_once} trial{'s' * (at_once != 1)} of {cpus:g} CPUs and {gpus:g} GPUs at once, "
                f"fewer than max_concurrent={space.max_concurrent}: the others wait for a free slot."
            )
    return None


def _autoscales() -> bool:
    """Whether the connected cluster has an autoscaler with node types configured."""
    try:
        from ray._private.state import state

        return bool(state.get_max_resources_from_cluster_config())
    except Exception:  # no autoscaler state in this Ray, or not reachable: treat as fixed
        return False


def reap_orphaned_agents() -> list[int]:
    """End the Ray agents a killed launcher left behind on this machine; return their ids.

    After a SIGKILL of the launcher, the local Ray it started goes down with it, except its
    dashboard and runtime-env agents: they notice at once that their raylet is gone, then wait
    up to 60 s trying to report it to the (also dead) GCS before they exit (Ray 2.60,
    `ray._private.utils.publish_error_to_driver`). A live agent is always a raylet's child; an
    agent whose parent is no longer a raylet is such an orphan: end it now.
    """
    import psutil

    reaped = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            name = process.info["name"] or ""
            if not (name.startswith("ray::") and name.endswith("Agent")):
                continue
            parent = process.parent()
            if parent is None or parent.name() != "raylet":
                process.kill()
                reaped.append(process.info["pid"])
        except psutil.Error:
            continue  # gone meanwhile, or not ours to end
    return reaped
