"""The MLflow tracking server on a Ray cluster's head node: start, stop, its address.

Run by the cluster configs (``cluster.yaml``, ``docker/cluster.local.yaml``; docs/cluster.md)::

    python -m gapray.tracking.server uri                      # http://<head's Ray node address>:5000
    python -m gapray.tracking.server start --backend-store-uri sqlite:////home/ray/mlflow/mlflow.db \\
        --artifacts-destination s3://BUCKET/gapray/mlartifacts
    python -m gapray.tracking.server stop

Where it listens: the head's loopback, which is where ``ray attach CONFIG -p 5000`` forwards
a laptop's ``localhost:5000`` (the launcher forwards to the head's *localhost*, DESIGN.md
sec. 6), and Ray's node address of the head, which every worker node reaches already (Ray's
own services listen there) and where the driver and the trials log. Nothing else: with a
private node address the server is never on a public interface. MLflow's default (uvicorn)
server binds one address, and only that server checks Host headers and CORS origins, so there
is one ``mlflow server`` process per address, each with one worker (``--workers 1``; MLflow's
default is 4), both on the same store.

The store: sqlite on the head's local disk, where SQLite's file locks work between those
processes (on NFS they do not: SQLite's own documentation warns against it). The driver and
the trials write through the node-address server; the loopback one mostly serves the UI.
Artifacts are proxied by the servers to ``--artifacts-destination`` (shared storage: S3, or
an NFS folder), so the worker nodes need neither credentials nor a mount for them.

``start`` stops the server of an earlier ``start`` first (by its pid file, checked against the
process's command line, never by a name pattern: a pattern such as ``pkill -f "mlflow server"``
also matches the launcher's own ``bash -c '...mlflow server...'`` shell and kills it, exit 143),
creates the store's tables, starts the servers together and waits until ``/health`` answers on
every address, so a server that cannot start fails ``ray up`` with its log instead of failing
later in a sweep. The servers' output goes to ``<tmp>/gapray-mlflow-<port>/server.log``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 5000
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServerSettings:
    """One MLflow tracking server of a cluster head."""

    backend_store_uri: str
    """Run and registry store, e.g. ``sqlite:////home/ray/mlflow/mlflow.db`` on the head's local disk."""
    artifacts_destination: str
    """Where the server puts artifacts it proxies: ``s3://bucket/prefix`` or a shared folder."""
    port: int = DEFAULT_PORT
    """TCP port on every address."""
    node_address: str | None = None
    """The head's address for the worker nodes; None: Ray's node address of this machine."""
    state_dir: str | None = None
    """Folder of the pid file and the log; None: ``<tmp>/gapray-mlflow-<port>``."""

    def __post_init__(self) -> None:
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if "://" not in self.backend_store_uri:
            raise ValueError(f"backend_store_uri must be a URI (sqlite:////abs/path/mlflow.db), "
                             f"got {self.backend_store_uri!r}")

    @property
    def folder(self) -> Path:
        return Path(self.state_dir or Path(tempfile.gettempdir()) / f"gapray-mlflow-{self.port}").expanduser()

    @property
    def pid_file(self) -> Path:
        return self.folder / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"


def node_address() -> str:
    """Ray's node address of this machine (what ``ray start`` advertises to the other nodes;
    loopback when the machine has no route out)."""
    import ray

    return str(ray.util.get_node_ip_address())


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def bind_addresses(address: str) -> list[str]:
    """Loopback first, then the node address unless that is loopback too."""
    return [LOOPBACK] if is_loopback(address) else [LOOPBACK, address]


def tracking_uri(address: str, port: int = DEFAULT_PORT) -> str:
    """The URI the driver and the trials log to: the node address, reachable from every node."""
    return f"http://{_host(address)}:{port}"


def server_commands(settings: ServerSettings, address: str) -> list[list[str]]:
    """One ``mlflow server`` command line per address of :func:`bind_addresses` (uvicorn, one
    worker each: MLflow's host-header and CORS checks only exist on its default uvicorn server,
    and uvicorn binds one address)."""
    allowed = ",".join(["localhost:*", f"{LOOPBACK}:*"] + [f"{_host(address)}:{settings.port}"] * (
        not is_loopback(address)))
    return [[sys.executable, "-m", "mlflow", "server", "--host", bind, "--port", str(settings.port),
             "--workers", "1", "--allowed-hosts", allowed,
             "--backend-store-uri", settings.backend_store_uri,
             "--artifacts-destination", settings.artifacts_destination]
            for bind in bind_addresses(address)]


def _is_our_server(pid: int) -> bool:
    """True when ``pid`` runs ``mlflow server`` (a stale pid file may name another process)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"mlflow" in b" ".join(argv) and b"server" in argv


def _recorded_pids(settings: ServerSettings) -> list[int]:
    try:
        return [int(line) for line in settings.pid_file.read_text().split()]
    except (OSError, ValueError):
        return []


def stop(settings: ServerSettings, timeout: float = 20.0) -> bool:
    """Stop the servers that ``start`` recorded in the pid file (each one's process group).
    Returns True when one was running."""
    pids = [pid for pid in _recorded_pids(settings) if _is_our_server(pid)]
    settings.pid_file.unlink(missing_ok=True)
    for pid in pids:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_is_our_server(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        if _is_our_server(pid):
            os.killpg(pid, signal.SIGKILL)
    return bool(pids)


def healthy(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{_host(address)}:{port}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def create_store(backend_store_uri: str) -> None:
    """Create (or upgrade) the store's tables in this process, so that the servers can start at
    the same time: two servers creating the tables of a new database at once would race."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=backend_store_uri).search_experiments(max_results=1)


def start(settings: ServerSettings, timeout: float = 120.0) -> str:
    """Start the servers (after stopping earlier ones) and wait until each answers on ``/health``.

    Returns the tracking URI. Raises ``RuntimeError`` with the end of the log when a server
    exits or does not answer within ``timeout`` seconds; the ones started are stopped then.
    """
    address = settings.node_address or node_address()
    stop(settings)
    settings.folder.mkdir(parents=True, exist_ok=True)
    if "://" not in settings.artifacts_destination:
        Path(settings.artifacts_destination).mkdir(parents=True, exist_ok=True)
    store = settings.backend_store_uri
    if store.startswith("sqlite:///"):
        Path(store[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    create_store(store)
    # MLflow 3's job runner (GenAI scorers, trace roll-ups: about ten huey processes per server)
    # serves nothing gapray logs: off.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with open(settings.log_file, "ab") as log:
        for bind, command in zip(bind_addresses(address), server_commands(settings, address)):
            log.write(f"\n$ {shlex.join(command)}\n".encode())
            log.flush()
            processes[bind] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=subprocess.STDOUT, env=env, cwd=settings.folder,
                                               start_new_session=True)
    settings.pid_file.write_text("".join(f"{p.pid}\n" for p in processes.values()))
    deadline = time.monotonic() + timeout
    waiting = dict(processes)
    while waiting and time.monotonic() < deadline:
        if any(p.poll() is not None for p in waiting.values()):
            break
        waiting = {bind: p for bind, p in waiting.items() if not healthy(bind, settings.port)}
        if waiting:
            time.sleep(0.5)
    if waiting:
        codes = {bind: p.poll() for bind, p in waiting.items()}
        stop(settings)
        tail = settings.log_file.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"the MLflow server did not answer on {', '.join(f'{b}:{settings.port}' for b in waiting)} "
                           f"(exit codes {codes}); end of {settings.log_file}:\n" + "\n".join(tail))
    return tracking_uri(address, settings.port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gapray.tracking.server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "uri"):
        sub = commands.add_parser(name)
        sub.add_argument("--port", type=int, default=DEFAULT_PORT)
        sub.add_argument("--address", default=None, help="the head's address for the workers (default: Ray's)")
        sub.add_argument("--state-dir", default=None, help="pid file and log (default: <tmp>/gapray-mlflow-PORT)")
        if name == "start":
            sub.add_argument("--backend-store-uri", required=True)
            sub.add_argument("--artifacts-destination", required=True)
            sub.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health")
    args = parser.parse_args(argv)
    if args.command == "uri":
        print(tracking_uri(args.address or node_address(), args.port))
        return 0
    settings = ServerSettings(backend_store_uri=getattr(args, "backend_store_uri", "sqlite:///unused"),
                              artifacts_destination=getattr(args, "artifacts_destination", ""), port=args.port,
                              node_address=args.address,
                              state_dir=args.state_dir)
    if args.command == "stop":
        print("stopped" if stop(settings) else "no server was running")
        return 0
    try:
        uri = start(settings, timeout=args.timeout)
    except (RuntimeError, ValueError, OSError) as error:
        print(f"gapray.tracking.server: error: {error}", file=sys.stderr)
        return 1
    print(f"MLflow server at {uri} and http://{LOOPBACK}:{settings.port} (log: {settings.log_file})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
