"""How to open the MLflow UI of a run: the command a sweep prints at its end.

On a Ray cluster the tracking server listens on the head's loopback and on its node address
(:mod:`gapray.tracking.server`), never on a public interface. From a laptop the way in is the
cluster launcher's own SSH tunnel, ``ray attach CONFIG -p 5000``: it forwards the laptop's
``localhost:5000`` to the head's ``localhost:5000`` (DESIGN.md sec. 6), for as long as the
shell it opens stays open. The cluster configs export ``GAPRAY_CLUSTER_CONFIG`` (their own
path in this repository) on the head, so a sweep submitted there can name the file.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from gapray.tracking.store import SQLITE_PREFIX, mlflow_ui_command

CLUSTER_CONFIG_ENV = "GAPRAY_CLUSTER_CONFIG"
"""Set on a cluster's head by ``cluster.yaml`` / ``docker/cluster.local.yaml``: the config's path."""


def tunnel_command(cluster_config: str, port: int = 5000) -> str:
    """The laptop's command that makes the head's MLflow server its ``http://localhost:PORT``."""
    return f"ray attach {cluster_config} -p {port}"


def _port(tracking_uri: str) -> int:
    parsed = urlparse(tracking_uri)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def mlflow_ui_hint(tracking_uri: str, cluster_config: str | None = None) -> str:
    """Where to open the UI of ``tracking_uri``, as one line to print.

    * a sqlite store: the ``mlflow ui`` command that serves it;
    * a server, run on a cluster head (``cluster_config`` or ``$GAPRAY_CLUSTER_CONFIG``): the
      tunnel command and the local address to open;
    * any other server: its address.
    """
    if tracking_uri.startswith(SQLITE_PREFIX):
        return mlflow_ui_command(tracking_uri)
    cluster_config = cluster_config or os.environ.get(CLUSTER_CONFIG_ENV) or None
    if urlparse(tracking_uri).scheme in {"http", "https"}:
        if cluster_config:
            port = _port(tracking_uri)
            return f"on your machine: {tunnel_command(cluster_config, port)}   then open http://localhost:{port}"
        return f"open {tracking_uri}"
    return mlflow_ui_command(tracking_uri)
