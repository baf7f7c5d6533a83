"""A Ray cluster of processes on this machine, for trying a campaign, tests and benchmarks.

    python -m controller.cluster.local --nodes 3          # prints its address; Ctrl-C stops it

It keeps to itself, so that it can run beside other Ray clusters on a shared machine: free ports
(the head's GCS port and, with ``--client``, a Ray Client port), its own temporary folder (not
``/tmp/ray``), no "current cluster" file for ``address="auto"`` to find, and it stops exactly the
processes it started — ``ray stop`` would stop every Ray of the user on the machine. Every node
offers one ``joulebench_host``; the head offers no CPU, so it measures nothing. The nodes share
this machine's cores: a trial proves correctness, not speed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "resources": {"joulebench_host": 1}}
HEAD = {"num_cpus": 0, "include_dashboard": False, "object_store_memory": 80 * 2**20}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _no_address_file() -> Iterator[None]:
    """Ray's test cluster writes /tmp/ray/ray_current_cluster, which ``ray.init("auto")`` of anyone
    on the machine then finds: not ours to write."""
    import ray._private.utils as utils

    saved = utils.write_ray_address
    utils.write_ray_address = lambda *args, **kwargs: None
    try:
        yield
    finally:
        utils.write_ray_address = saved


class LocalCluster:
    """A head (no CPUs, no joulebench_host) and nodes added with :meth:`add_nodes`."""

    def __init__(self, client: bool = False) -> None:
        from ray.cluster_utils import Cluster

        # Short: Ray's socket paths live under it, and a Unix socket path has at most 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="jbray-", dir="/tmp"))
        self.client_port = free_port() if client else None
        head: dict[str, Any] = {**HEAD, "temp_dir": str(self.temp_dir)}
        if self.client_port is not None:
            head["ray_client_server_port"] = self.client_port
        with _no_address_file():
            self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self.nodes: list[Any] = []

    @property
    def address(self) -> str:
        """HEAD:PORT of its GCS, for a controller on this machine."""
        return str(self.cluster.address)

    @property
    def client_address(self) -> str:
        """ray://127.0.0.1:PORT (Ray Client), when started with ``client=True``."""
        if self.client_port is None:
            raise ValueError("this local cluster was started without a Ray Client port (client=True)")
        return f"ray://127.0.0.1:{self.client_port}"

    def add_nodes(self, n: int, env: dict[str, str] | None = None, wait: bool = True) -> list[Any]:
        """``n`` nodes offering one joulebench_host each; ``env``: their processes' extra environment."""
        added = [self.cluster.add_node(wait=False, env_vars=dict(env or {}), **NODE) for _ in range(n)]
        self.nodes += added
        if wait:
            self.cluster.wait_for_nodes()
        return added

    def kill(self, node: Any) -> str:
        """End a node at once (raylet, object store, workers), as a lost VM goes."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)
        return str(node.node_id)

    def kill_head(self) -> None:
        """End the head at once (GCS, Ray Client server): the cluster is gone."""
        head: Any = self.cluster.head_node
        head.kill_all_processes(check_alive=False, allow_graceful=False)

    def shutdown(self) -> None:
        """Stop every process of this cluster (and only those), and remove its temporary folder."""
        try:
            for node in list(self.nodes):
                try:
                    self.cluster.remove_node(node, allow_graceful=False)
                except Exception:  # noqa: BLE001 - a node that is gone already
                    pass
            self.nodes = []
            try:
                self.cluster.shutdown()
            except Exception:  # noqa: BLE001 - a head killed on purpose
                self.kill_head()
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.cluster.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2, help="nodes offering one joulebench_host each (default 2)")
    parser.add_argument("--client", action="store_true", help="also a Ray Client port (ray://127.0.0.1:PORT)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(client=args.client)
    try:
        cluster.add_nodes(args.nodes)
        address = cluster.client_address if args.client else cluster.address
        print(f"a local Ray cluster with {args.nodes} node(s) is up at {address} (temporary folder {cluster.temp_dir})")
        print(f"  python -m controller campaign run suite/campaigns/ci-smoke.toml --cluster {address}")
        print("Ctrl-C stops it (and only it)", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave half of it running
        cluster.shutdown()
        print("the local Ray cluster is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
