"""The Ray cluster: connecting to it, and its joulebench hosts (live nodes offering one ``joulebench_host``).

Every refusal here happens before any run: an address nothing answers at, a Ray that cannot be
imported, a cluster without a node offering the resource, a node offering more than one (it would
measure two runs at once).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from controller.errors import UserError
from controller.progress import fmt_duration

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

    @property
    def label(self) -> str:
        """The name progress, plans and records show: the hostname alone is ambiguous (several nodes
        on one host, a replacement VM given an old name), the node id is not."""
        return node_label(self.hostname, self.node_id)


def node_label(hostname: str | None, node_id: str | None) -> str:
    return f"{hostname or '?'}#{(node_id or '?')[:6]}"


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
    """Connect as a Ray driver for the block, watched: a head that stops answering ends the process in
    one line (see :class:`HeadWatch`). Disconnecting ends this job's tasks and actors."""
    ray = import_ray()
    target, host, port = parse_address(address)
    if host is not None and port is not None:
        check_reachable(address, host, port)
    init(ray, address, target)
    quiet_ray_loggers()
    cluster = Cluster(address, ray, client=target.startswith("ray://"))
    watched = (host, port) if host is not None and port is not None else gcs_endpoint(ray)
    cluster.watch = HeadWatch(address, *watched) if watched else None
    if cluster.watch is not None:
        cluster.watch.start()
    try:
        yield cluster
    except Exception:
        if not cluster.head_answers():  # a Ray call raised because the head is gone: the watch says so
            cluster.wait_for_watch()
        raise
    finally:
        if cluster.watch is not None:
            cluster.watch.stop()
        ray.shutdown()


def quiet_ray_loggers() -> None:
    """Ray Client logs its reconnect attempts as warnings ("Log channel is reconnecting"): what the
    user needs to know about a lost head is said once, by :class:`HeadWatch`. (Ray Client sets its log
    stream's level as it connects: so this comes after.)"""
    for name in ("ray", "ray.util.client.logsclient", "ray.util.client.dataclient", "ray.util.client.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)


def gcs_endpoint(ray: Any) -> tuple[str, int] | None:
    """(host, port) of the GCS this driver is connected to (for ``auto``)."""
    with suppress(Exception):
        host, _, port = str(ray.get_runtime_context().gcs_address).rpartition(":")
        return host.strip("[]"), int(port)
    return None


# Ray Client's proxy starts one server process per driver; now and then that process dies as it
# starts (its log: "SpecificServer startup failed", empty stderr) and the driver is told
# "Initialization failure from server"; under load the server may also not answer in time. The
# next driver gets a new one: so such a failure is tried again, with a growing pause, for minutes.
CLIENT_START_FAILURES = ("Initialization failure from server", "ray client connection timeout")
CLIENT_START_BUDGET_S = 300.0
CLIENT_BACKOFF_S = (2.0, 4.0, 8.0, 15.0, 30.0)


def init(
    ray: Any,
    address: str,
    target: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """ray.init as a driver; a Ray Client server that failed to start is tried again, with backoff,
    until CLIENT_START_BUDGET_S have passed (each try said on screen)."""
    started, attempt = clock(), 0
    while True:
        attempt += 1
        try:
            ray.init(address=target, log_to_driver=False, logging_level=logging.ERROR, namespace="joulebench")
            return
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ... by version
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            transient = target.startswith("ray://") and any(f in str(exc) for f in CLIENT_START_FAILURES)
            pause = CLIENT_BACKOFF_S[min(attempt, len(CLIENT_BACKOFF_S)) - 1]
            spent = clock() - started
            if not transient or spent + pause > CLIENT_START_BUDGET_S:
                tried = f" (tried {attempt} times over {fmt_duration(spent)})" if attempt > 1 else ""
                raise UserError(
                    f"could not connect to the Ray cluster at {address}{tried}: {first[:300]}{auth_hint(exc)}"
                ) from None
            print(
                f"the Ray Client server at {address} failed to start for this driver ({first[:120]}); "
                f"trying again in {pause:g} s (try {attempt + 1}; giving up {fmt_duration(CLIENT_START_BUDGET_S)} "
                f"after the first){auth_hint(exc) if attempt == 1 else ''}",
                file=sys.stderr,
                flush=True,
            )
            with suppress(Exception):
                ray.shutdown()
            sleep(pause)


AUTH_HINT = (
    "; if the head uses Ray's token authentication (the default of `ray start --head` from Ray 2.60), "
    "set RAY_AUTH_MODE=token and give this machine the head's ~/.ray/auth_token (or RAY_AUTH_TOKEN)"
)


def auth_hint(exc: BaseException) -> str:
    """Ray's own words for a missing token are a timeout (Ray Client) or "InvalidAuthToken" (GCS)."""
    text = str(exc)
    if os.environ.get("RAY_AUTH_MODE") == "token" and "InvalidAuthToken" not in text:
        return ""
    return AUTH_HINT if ("InvalidAuthToken" in text or "connection timeout" in text) else ""


# How long the head may not answer before the cluster counts as gone. Ray itself blocks the
# driver's calls meanwhile, then (after a minute) aborts it from C++ ("Failed to connect to GCS",
# "Check failed ... RpcError"), or, through Ray Client, retries for half a minute and raises.
HEAD_LOST_S = 10.0
HEAD_PROBE_S = 2.0
EXIT_CLUSTER_LOST = 3


def tcp_answers(host: str, port: int, timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class HeadWatch:
    """A thread that probes the head's port; when it has not answered for ``lost_after_s``, it says in
    one line that the cluster is gone and how to resume, and ends the process (exit 3): the main
    thread may be blocked inside Ray by then. What was written stays written: records are atomic,
    and the folder's lock names this process, which is gone, so the next run takes it over."""

    def __init__(
        self,
        address: str,
        host: str,
        port: int,
        lost_after_s: float = HEAD_LOST_S,
        interval_s: float = HEAD_PROBE_S,
        probe: Callable[[str, int], bool] = tcp_answers,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.address, self.host, self.port = address, host, port
        self.lost_after_s, self.interval_s, self.probe = lost_after_s, interval_s, probe
        self.on_lost = on_lost or _exit_lost
        self.resume_hint = "run the same command again to resume"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="joulebench-head-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def message(self) -> str:
        endpoint = f"{self.host}:{self.port}"
        head = "its head" if self.address.endswith(endpoint) else f"its head {endpoint}"
        return (
            f"error: the Ray cluster at {self.address} is gone ({head} has not answered for {self.lost_after_s:g} s); "
            f"runs in flight are lost, records written so far are kept: {self.resume_hint}"
        )

    def _watch(self) -> None:
        failing_since: float | None = None
        while not self._stop.wait(self.interval_s):
            if self.probe(self.host, self.port):
                failing_since = None
                continue
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if now - failing_since >= self.lost_after_s and not self._stop.is_set():
                self.on_lost(self.message())
                return


def _exit_lost(message: str) -> None:
    with suppress(Exception):
        sys.stdout.flush()
    print(f"\n{message}", file=sys.stderr, flush=True)
    os._exit(EXIT_CLUSTER_LOST)


class Cluster:
    """The connected cluster: its joulebench hosts, read afresh on each call."""

    def __init__(self, address: str, ray: Any, client: bool = False) -> None:
        self.address = address
        self.ray = ray
        self.client = client  # through Ray Client: cluster-side calls go through a task
        self.watch: HeadWatch | None = None
        self._requester: Any = None

    def request_nodes(self, count: int, wait_s: float = 0.0) -> None:
        """Ask Ray's autoscaler (where there is one) for room for ``count`` measuring nodes at once (0
        withdraws the request, which otherwise outlives this driver). A hint: errors are ignored."""
        from controller.cluster.host import request_nodes

        with suppress(Exception):
            if not self.client:
                request_nodes(count, RESOURCE)
                return
            if self._requester is None:
                self._requester = self.ray.remote(num_cpus=0, max_retries=0)(request_nodes)
            ref = self._requester.remote(count, RESOURCE)
            if wait_s:
                self.ray.wait([ref], timeout=wait_s)

    def head_answers(self) -> bool:
        """False when the head's port does not answer (a Ray call that raised may mean the cluster is gone)."""
        return self.watch is None or self.watch.probe(self.watch.host, self.watch.port)

    def wait_for_watch(self) -> None:
        """The head does not answer: let the watch say so and end the process, rather than a traceback."""
        if self.watch is not None:
            time.sleep(self.watch.lost_after_s + 3 * self.watch.interval_s)

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
                    f"node {node.label} ({node.ip}) of the Ray cluster at {self.address} offers "
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


def labels(hosts: list[Node]) -> dict[str, str]:
    """Node id -> the name progress and plans show (``hostname#node-id``)."""
    return {h.node_id: h.label for h in hosts}
