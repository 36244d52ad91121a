"""The launcher path, run inside fresh network, PID and mount namespaces (see test_launcher_e2e.py).

Usage (as root, from ``test_launcher_e2e.py``)::

    unshare --net --pid --mount-proc --kill-child -- bash -c 'python _launcher_inside.py SPEC_JSON'

Inside, nothing of the machine's other processes is visible (``ray stop`` and any ``pkill`` in
the cluster config cannot reach them) and the only network is loopback: ``lo`` with 127.0.0.1,
plus 10.233.0.1 on ``lo`` as the head's "private" address (a default route through ``lo``
makes Ray pick it as its node address, as it picks a cloud node's private IP). The mounts are
private to the namespace: a tmpfs on ``/mnt`` and ``/run``, the work folder over ``/tmp`` and
over the user's home, ``/mnt/shared`` (the config's NFS folder) from the work folder, the real
data read-only at ``/mnt/shared/data``.

Steps: sshd on 127.0.0.1:22 (key only) -> ``ray up`` -> ``ray submit ... deari_sweep.py
--smoke-test`` -> the runs read back with ``MlflowClient`` through the head's loopback (where
``ray attach -p 5000`` forwards) -> ``ray down``. Writes what it saw to ``<work>/result.json``;
the test asserts on it. Every command's output is kept in ``<work>/logs``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NODE_ADDRESS = "10.233.0.1"
WORK = Path("/mnt/e2e")
SHARED = Path("/mnt/shared")
MLFLOW_PORT = 5000


def run(argv: list[str], name: str, timeout: float, env: dict[str, str] | None = None,
        cwd: str | None = None) -> dict[str, Any]:
    """Run ``argv``, keep its output in ``logs/<name>.log``; return rc, output and seconds."""
    started = time.monotonic()
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, env=env, cwd=cwd)
        rc, out = done.returncode, done.stdout
    except subprocess.TimeoutExpired as error:
        rc, out = -9, (error.stdout or b"").decode(errors="replace") if isinstance(error.stdout, bytes) else (
            error.stdout or "")
        out += f"\n[timed out after {timeout} s]"
    (WORK / "logs").mkdir(exist_ok=True)
    (WORK / "logs" / f"{name}.log").write_text(f"$ {' '.join(argv)}\n{out}")
    return {"rc": rc, "output": out, "seconds": round(time.monotonic() - started, 1)}


def sh(command: str) -> None:
    subprocess.run(["bash", "-ec", command], check=True)


def isolate(spec: dict[str, Any]) -> None:
    """Private mounts and loopback-only network (this process is PID 1 of the new namespace's child)."""
    work, home, data = spec["work"], spec["home"], spec["data"]
    sh("mount --make-rprivate /")
    sh("mount -t tmpfs tmpfs /mnt && mkdir -p /mnt/e2e /mnt/shared")
    sh(f"mount --bind {work} /mnt/e2e && mount --bind /mnt/e2e/shared /mnt/shared")
    sh(f"mkdir -p /mnt/shared/data && mount --bind {data} /mnt/shared/data"
       " && mount -o remount,bind,ro /mnt/shared/data")
    # The checkout, its venv and the Python it was made from stay at their paths even when they
    # live under /tmp or the home folder (pyenv: ~/.pyenv), which are replaced below.
    overlaid = ("/tmp/", home.rstrip("/") + "/")
    kept = [path for path in spec["keep"] if path.startswith(overlaid)]
    for index, path in enumerate(kept):
        sh(f"mkdir -p /mnt/keep/{index} && mount --bind {path} /mnt/keep/{index}")
    sh("mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && chmod 755 /run/sshd")
    sh(f"mount --bind /mnt/e2e/tmp /tmp && mount --bind /mnt/e2e/home {home}")
    for index, path in enumerate(kept):
        sh(f"mkdir -p {path} && mount --bind /mnt/keep/{index} {path}")
    sh(f"test -x {spec['python']}")
    sh(f"ip link set lo up && ip addr add {NODE_ADDRESS}/32 dev lo"
       f" && ip route add default dev lo src {NODE_ADDRESS}")


def start_sshd(spec: dict[str, Any]) -> None:
    """sshd on 127.0.0.1:22, public-key login only, the user's own ~/.ssh/authorized_keys."""
    home, ssh = Path(spec["home"]), WORK / "ssh"
    ssh.mkdir(mode=0o700)
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {ssh}/host_ed25519_key")
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {home}/.ssh/id_ed25519")
    shutil.copy(home / ".ssh" / "id_ed25519.pub", home / ".ssh" / "authorized_keys")
    os.chmod(home / ".ssh" / "authorized_keys", 0o600)
    (ssh / "sshd_config").write_text(
        "ListenAddress 127.0.0.1\nPort 22\n"
        f"HostKey {ssh}/host_ed25519_key\nPidFile {ssh}/sshd.pid\n"
        "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nAuthorizedKeysFile .ssh/authorized_keys\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "AllowTcpForwarding yes\nSubsystem sftp internal-sftp\n"
    )
    subprocess.run([spec["sshd"], "-f", str(ssh / "sshd_config"), "-E", str(ssh / "sshd.log")], check=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not listen on 127.0.0.1:22: " + (ssh / "sshd.log").read_text()) from None
            time.sleep(0.2)


def listening(port: int) -> list[str]:
    """Addresses with a TCP socket listening on ``port`` (this namespace's /proc/net/tcp, tcp6)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                if width == 8:
                    found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.append(socket.inet_ntop(socket.AF_INET6, words))
    return sorted(found)


def read_back(home: Path) -> dict[str, Any]:
    """The sweep as a laptop sees it through the tunnel: MLflow at the head's localhost:5000."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{MLFLOW_PORT}")
    experiment = client.get_experiment_by_name("deari-sweep")
    if experiment is None:
        return {"experiment": None}
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    out: dict[str, Any] = {"experiment": experiment.experiment_id, "artifact_location": experiment.artifact_location,
                           "parents": [{"id": p.info.run_id, "status": p.info.status,
                                        "name": p.data.tags.get("mlflow.runName")} for p in parents]}
    if len(parents) == 1:
        parent = parents[0]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        out["children"] = [{"id": c.info.run_id, "status": c.info.status, "metrics": sorted(c.data.metrics)}
                           for c in children]
        out["parent_artifacts"] = sorted(a.path for a in client.list_artifacts(parent.info.run_id))
    try:
        version = client.get_model_version_by_alias("deari", "champion")
        out["champion"] = {"version": version.version, "run_id": version.run_id}
    except Exception as error:  # noqa: BLE001 - reported to the test, which asserts on it
        out["champion"] = {"error": str(error)}
    out["artifact_files_on_shared"] = sorted(str(p.relative_to(SHARED)) for p in SHARED.rglob("trials.csv"))
    out["sqlite_files"] = sorted(str(p) for root in (home, SHARED) for p in root.rglob("*.db")
                                 if not str(p).startswith(str(SHARED / "data")))
    return out


def ray_processes() -> list[str]:
    names = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(word in command for word in ("raylet", "gcs_server", "mlflow server")):
                names.append(command[:160])
    return names


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    isolate(spec)
    home = Path(spec["home"])
    result: dict[str, Any] = {"steps": {}}

    def save() -> None:
        (WORK / "result.json").write_text(json.dumps(result, indent=2))

    try:
        start_sshd(spec)
        bin_dir = str(Path(spec["python"]).parent)
        laptop = {"HOME": str(home), "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                  "LANG": "C.UTF-8", "USER": spec["user"], "TERM": "dumb"}
        ray, config, repo = f"{bin_dir}/ray", spec["config"], spec["repo"]
        steps = result["steps"]
        steps["up"] = run([ray, "up", "-y", "--disable-usage-stats", "--log-style", "record", config], "ray_up",
                          timeout=600, env=laptop, cwd=repo)
        save()
        if steps["up"]["rc"] == 0:
            steps["submit"] = run([ray, "submit", "--log-style", "record", config, "tuning/deari_sweep.py", "--",
                                   "--address", "auto", "--smoke-test", "--name", "e2e",
                                   "--storage-path", "/mnt/shared/gapray/ray_results"],
                                  "ray_submit", timeout=900, env=laptop, cwd=repo)
            result["listening_5000"] = listening(MLFLOW_PORT)
            result["tracking_uri_on_head"] = run(
                ["ssh", "-i", f"{home}/.ssh/id_ed25519", "-o", "StrictHostKeyChecking=no", "-o",
                 "UserKnownHostsFile=/dev/null", f"{spec['user']}@127.0.0.1",
                 # stderr dropped: bash -i without a terminal warns "no job control" on it, and ssh
                 # delivers stderr and stdout on separate channels, so the warning could land last
                 "bash --login -i -c 'echo $MLFLOW_TRACKING_URI' 2>/dev/null"],
                "tracking_uri", timeout=60, env=laptop)["output"].strip().splitlines()[-1:]
            result["mlflow"] = read_back(home)
            save()
        steps["down"] = run([ray, "down", "-y", "--log-style", "record", config], "ray_down", timeout=300, env=laptop,
                            cwd=repo)
        result["after_down"] = ray_processes()
    except Exception as error:  # noqa: BLE001 - the test reports it
        result["error"] = f"{type(error).__name__}: {error}"
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
