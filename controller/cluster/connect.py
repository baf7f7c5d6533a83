"""The Ray cluster: connecting to it, and its joulebench hosts (live nodes offering one ``joulebench_host``).

Every refusal here happens before any run: an address nothing answers at, a Ray that cannot be
imported, a cluster without a node offering the resource, a node offering more than one (it would
measure two runs at once).
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from controller.errors import UserError

RESOURCE = "joulebench_host"
GCS_PORT = 6379
START_NODE = f"ray start --address HEAD:{GCS_PORT} --resources '{{\"{RESOURCE}\": 1}}'"
_ADDRESS = re.compile(r"^(?P<client>ray://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class Node:
    """A live node that offers one joulebench_host."""

    node_id: str
    ip: str
    hostname: str

    def identity(self) -> dict[str, str]:
        """What a record carries of where it ran."""
        return {"node_id": self.node_id, "node_ip": self.ip, "hostname": self.hostname}


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--cluster needs Ray, which is not installed here: pip install -e '.[cluster]'") from None
    return ray


def parse_address(address: str) -> tuple[str, str | None, int | None]:
    """(what ray.init takes, host, port) of ``auto``, ``HOST[:PORT]`` or ``ray://HOST:PORT``."""
    if address == "auto":
        return address, None, None
    match = _ADDRESS.match(address.strip())
    if not match:
        raise UserError(
            f"--cluster {address!r} is not a Ray address: give HEAD:6379 (on a machine of the cluster), "
            "ray://HEAD:10001 (from elsewhere, through Ray Client) or auto"
        )
    port = int(match["port"]) if match["port"] else (10001 if match["client"] else GCS_PORT)
    host = match["host"].strip("[]")
    target = f"{match['client'] or ''}{match['host']}:{port}"
    return target, host, port


def check_reachable(address: str, host: str, port: int, timeout_s: float = 5.0) -> None:
    """A quick TCP check, so that a wrong address fails in seconds rather than in Ray's minute of retries."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    raise UserError(
        f"no Ray cluster answers at {address} ({host}:{port}: {why}); start its head with "
        f"`ray start --head` or check the address and port"
    )


@contextmanager
def connected(address: str) -> Iterator[Cluster]:
    """Connect as a Ray driver for the block; disconnecting ends this job's tasks and actors."""
    ray = import_ray()
    target, host, port = parse_address(address)
    if host is not None and port is not None:
        check_reachable(address, host, port)
    init(ray, address, target)
    try:
        yield Cluster(address, ray)
    finally:
        ray.shutdown()


# Ray Client's proxy starts one server process per driver; now and then that process dies as it
# starts (its log: "SpecificServer startup failed", empty stderr) and the driver is told
# "Initialization failure from server". The next driver gets a new one: so such a failure is retried.
CLIENT_START_FAILURE = "Initialization failure from server"
CLIENT_START_ATTEMPTS = 3


def init(ray: Any, address: str, target: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """ray.init as a driver; a Ray Client server that failed to start is tried again, twice."""
    for attempt in range(1, CLIENT_START_ATTEMPTS + 1):
        try:
            ray.init(address=target, log_to_driver=False, logging_level=logging.ERROR, namespace="joulebench")
            return
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ... by version
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            transient = target.startswith("ray://") and CLIENT_START_FAILURE in str(exc)
            if not transient or attempt == CLIENT_START_ATTEMPTS:
                tried = f" (tried {attempt} times)" if attempt > 1 else ""
                raise UserError(f"could not connect to the Ray cluster at {address}{tried}: {first[:300]}") from None
            print(
                f"the Ray Client server at {address} failed to start for this driver ({first[:120]}); "
                f"trying again ({attempt + 1} of {CLIENT_START_ATTEMPTS})",
                file=sys.stderr,
            )
            with suppress(Exception):
                ray.shutdown()
            sleep(2.0 * attempt)


class Cluster:
    """The connected cluster: its joulebench hosts, read afresh on each call."""

    def __init__(self, address: str, ray: Any) -> None:
        self.address = address
        self.ray = ray

    def live(self) -> list[tuple[Node, float]]:
        """Live nodes offering joulebench_host, with how many they offer."""
        out = []
        for n in self.ray.nodes():
            amount = (n.get("Resources") or {}).get(RESOURCE, 0)
            if n.get("Alive") and amount:
                node = Node(n["NodeID"], n.get("NodeManagerAddress", "?"), n.get("NodeManagerHostname", "?"))
                out.append((node, amount))
        return sorted(out, key=lambda pair: (pair[0].hostname, pair[0].node_id))

    def hosts(self) -> list[Node]:
        """Live nodes offering joulebench_host; UserError when there is none, or one offers more than 1."""
        hosts = []
        for node, amount in self.live():
            if amount != 1:
                raise UserError(
                    f"node {node.node_id[:8]} ({node.hostname}) of the Ray cluster at {self.address} offers "
                    f"{RESOURCE} = {amount:g}; a node must offer exactly 1, so that it measures one run at a time: "
                    f"restart it with {START_NODE}"
                )
            hosts.append(node)
        if not hosts:
            others = sum(1 for n in self.ray.nodes() if n.get("Alive"))
            raise UserError(
                f"the Ray cluster at {self.address} has {others} live node(s) and none offers the {RESOURCE} "
                f"resource; start each measuring machine with {START_NODE}"
            )
        return hosts

    def alive(self, node_id: str) -> bool:
        return any(n.get("Alive") and n.get("NodeID") == node_id for n in self.ray.nodes())


def labels(hosts: list[Node]) -> dict[str, str]:
    """Node id -> the name progress and plans show: the hostname, with the node id when hosts share one."""
    names = [h.hostname for h in hosts]
    return {h.node_id: h.hostname if names.count(h.hostname) == 1 else f"{h.hostname}#{h.node_id[:6]}" for h in hosts}
