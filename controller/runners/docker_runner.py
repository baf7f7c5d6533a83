"""The harness in its image, through the Docker SDK: labelled, unprivileged, always removed."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.errors import UserError
from controller.hostinfo import pid_alive, ram_bytes
from controller.images import get_manifest, image_provenance, source_hash
from controller.runners.base import Execution, Invocation, LineSplitter, Mount, signals_deferred

LABEL = "joulebench"
OWNER_LABEL = "joulebench.owner"
CONTAINER_USER = "10001:10001"
WAIT_SLICE_S = 1.0
DOCKER_TIMEOUT_S = 600
SIGKILL_EXIT = 128 + signal.SIGKILL
# A container without --memory may use this share of the host's RAM (and no swap): enough for any
# model we run where the host can hold it, while the controller and its meters outlive a runaway.
DEFAULT_MEMORY_SHARE = 0.75


def connect() -> Any:
    """A Docker client that answered a ping, or a UserError saying how to get one."""
    import docker
    import docker.errors

    try:
        # Creating a container on a copy-based storage driver (vfs) copies the image: minutes on a
        # busy host, so calls may take long before the engine answers.
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise UserError(
            f"no Docker engine answers at {where} ({exc.__class__.__name__}). Start one "
            "(`sudo systemctl start docker`, or `dockerd &` as root) and check `docker info`, "
            "or run without Docker: --runner local"
        ) from None
    return client


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _remove(client: Any, ident: str, wait_s: float = 60.0) -> bool:
    """Remove a container (by id or name); one that is already gone counts as removed. One that is
    being removed already (409: another controller, or the engine) is waited for, up to ``wait_s``,
    so that it is gone when this returns True; False when it is still there after that."""
    import docker.errors

    try:
        client.api.remove_container(ident, force=True)
        return True
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError as exc:
        if not _being_removed(exc):
            raise
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            client.api.inspect_container(ident)
        except docker.errors.NotFound:
            return True
        time.sleep(0.2)
    return False


def _being_removed(exc: Exception) -> bool:
    """An engine's answer meaning someone else is removing (or has just removed) the container."""
    text = _explain(exc).lower()
    return getattr(exc, "status_code", None) == 409 or "already in progress" in text or "marked for removal" in text


def labelled(client: Any, label: str = LABEL, running_only: bool = False) -> list[dict[str, Any]]:
    """joulebench containers as the engine lists them (id, names, labels, state), without inspecting
    each: on a shared engine another controller may remove one between a listing and an inspection."""
    found: list[dict[str, Any]] = client.api.containers(all=not running_only, filters={"label": label})
    return found


def owner_gone(labels: dict[str, str]) -> bool:
    """Whether the controller that labelled a container ran on this host and is gone."""
    owner_host, _, pid = (labels.get(OWNER_LABEL) or "").rpartition(":")
    return owner_host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def reap_orphans(client: Any) -> list[str]:
    """Remove joulebench containers whose controller process on this host is gone. Each step
    tolerates a container that vanishes or that another controller is removing at the same time,
    and an engine that answers an error for one: that one is left for the next start."""
    import docker.errors
    import requests.exceptions

    removed: list[str] = []
    try:
        listed = labelled(client)
    except (docker.errors.APIError, requests.exceptions.RequestException):
        return removed  # an engine that cannot list now: the next start reaps
    for entry in listed:
        if not owner_gone(entry.get("Labels") or {}):
            continue
        name = ((entry.get("Names") or [""])[0] or entry["Id"][:12]).lstrip("/")
        try:
            if _remove(client, entry["Id"]):
                removed.append(name)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            continue
    return removed


def _network_mode(network: bool | str) -> str | None:
    if network is False:
        return "none"
    return None if network is True else network


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def default_memory(ram_bytes: int | None) -> str | None:
    """The memory limit of a container started without --memory: a share of the engine host's RAM
    that any model we run fits in, leaving the rest to the controller, its meters and the system."""
    if not ram_bytes:
        return None
    return f"{int(ram_bytes * DEFAULT_MEMORY_SHARE) // 2**20}m"


def limits(inv: Invocation, engine_ram_bytes: int | None) -> dict[str, Any]:
    """What a container may use, as recorded in the run's runner block."""
    memory = inv.memory or default_memory(engine_ram_bytes)
    source = "--memory"
    if not inv.memory:
        source = f"default: {DEFAULT_MEMORY_SHARE:.0%} of the host's RAM" if memory else "none: host RAM unknown"
    return {
        "memory_limit": memory,
        "memory_limit_source": source,
        "pids_limit": inv.pids_limit,
        "tmp_size": inv.tmp_size,
        "shm_size": inv.shm_size,
    }


def container_kwargs(inv: Invocation, engine_ram_bytes: int | None = None) -> dict[str, Any]:
    """The hardened container: unprivileged, read-only root, no capabilities, bounded memory, /tmp,
    /dev/shm and pids."""
    bounds = limits(inv, engine_ram_bytes)
    kwargs: dict[str, Any] = {
        "command": inv.argv,
        "labels": {LABEL: "1", OWNER_LABEL: _owner(), **inv.labels},
        "environment": inv.env,
        "volumes": {m.host: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in inv.mounts},
        "network_mode": _network_mode(inv.network),
        "user": CONTAINER_USER if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}",
        "read_only": True,
        "tmpfs": {"/tmp": f"exec,size={inv.tmp_size}"},
        "shm_size": inv.shm_size,
        "pids_limit": inv.pids_limit,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "detach": True,
    }
    if inv.entrypoint is not None:
        kwargs["entrypoint"] = inv.entrypoint
    if inv.ports:
        kwargs["ports"] = {f"{port}/tcp": (address, None) for port, address in inv.ports.items()}
    if bounds["memory_limit"]:
        # /tmp and /dev/shm are RAM, charged to the container: the limit bounds them too.
        kwargs["mem_limit"] = bounds["memory_limit"]
        kwargs["memswap_limit"] = bounds["memory_limit"]  # no swap: over the limit means killed
    if inv.gpu:
        import docker.types

        kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return kwargs


def readable_root() -> Path:
    """Where readable views of owner-only files are staged (controller/runners/readable.py)."""
    from controller.cache import default_root

    return default_root() / "readable"


class DockerRunner:
    kind = "docker"

    def __init__(self, client: Any | None = None, note: Callable[[str], None] | None = None) -> None:
        self.client = client or connect()
        self.reaped = reap_orphans(self.client)
        self._ram_bytes: int | None = None
        # Said on screen: a readable copy staged for a container (controller/runners/readable.py).
        self.note: Callable[[str], None] = note or (lambda text: print(text, file=sys.stderr))

    def engine_ram_bytes(self) -> int | None:
        """The RAM of the host the engine runs on (a remote engine's is not this host's)."""
        if self._ram_bytes is None:
            try:
                self._ram_bytes = int(self.client.info().get("MemTotal") or 0) or ram_bytes()
            except Exception:  # noqa: BLE001 - an engine that cannot say: this host's
                self._ram_bytes = ram_bytes()
        return self._ram_bytes

    def path_for(self, mount: Mount) -> str:
        return mount.target

    def image(self, name: str) -> Any:
        import docker.errors

        tag = get_manifest(name).tag
        try:
            return self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            raise UserError(
                f"image {tag} is not built; build it with `python -m controller images build "
                f"{name}` or run with --runner local"
            ) from None

    def server_address(self) -> tuple[str, bool]:
        # With a bridge network the container's port is published on the host's loopback; an
        # engine without one (--bridge=none) runs the server on the host's network, on loopback.
        if self.client.networks.list(names=["bridge"]):
            return "0.0.0.0", True
        return "127.0.0.1", False

    def environment_id(self, image: str) -> str:
        return f"docker:{self.image(image).id}"

    def describe(self, image: str) -> dict[str, Any]:
        img = self.image(image)
        manifest = get_manifest(image)
        digests = img.attrs.get("RepoDigests") or []
        return {
            "kind": self.kind,
            "image": image,
            "image_tag": manifest.tag,
            "image_id": img.id,
            "image_digest": digests[0] if digests else None,
            "image_digest_reason": None if digests else "built locally, never pushed: no digest",
            "image_labels": img.labels,
            # Built from other harness/suite sources than this checkout's (see `images list`).
            "image_stale": (img.labels or {}).get("joulebench.source") != source_hash(manifest),
            **image_provenance(img.attrs, manifest),  # base digest, lock_sha256, harness_source_hash
        }

    def start(self, inv: Invocation) -> StartedContainer:
        described = self.describe(inv.image) | limits(inv, self.engine_ram_bytes())
        if os.getuid() == 0:  # the container runs as CONTAINER_USER, not as the files' owner
            from dataclasses import replace

            from controller.runners.readable import readable_mounts

            mounts, hidden = readable_mounts(inv.mounts, readable_root(), self.note)
            inv = replace(inv, mounts=mounts)
            if hidden:
                return StartedContainer.refused(
                    self.client,
                    inv,
                    described,
                    f"the container's unprivileged user ({CONTAINER_USER}) cannot read "
                    f"{', '.join(hidden[:5])}{' ...' if len(hidden) > 5 else ''}: make them "
                    "readable (chmod -R a+rX PATH) or run the controller as their owner",
                )
        return StartedContainer.create(self.client, inv, described, self.engine_ram_bytes())


class StartedContainer:
    """One container of the harness; :meth:`cleanup` removes it whatever happened."""

    def __init__(self, client: Any, inv: Invocation, described: dict[str, Any], name: str) -> None:
        self.client = client
        self.inv = inv
        self.described = described
        self.name = name
        self.container: Any = None
        self.start_error: str | None = None
        self.out = LineSplitter(inv.on_line)
        self.killed_by_us = False
        self._follower: threading.Thread | None = None
        self._deadline = time.monotonic() + inv.timeout_s

    @classmethod
    def refused(cls, client: Any, inv: Invocation, described: dict[str, Any], why: str) -> StartedContainer:
        started = cls(client, inv, described, "")
        started.start_error = why
        return started

    @classmethod
    def create(
        cls, client: Any, inv: Invocation, described: dict[str, Any], engine_ram_bytes: int | None = None
    ) -> StartedContainer:
        import docker.errors
        import requests.exceptions

        # A name chosen before creation: a Ctrl-C during the create call still finds the container.
        started = cls(client, inv, described, f"joulebench-{secrets.token_hex(6)}")
        try:
            kwargs = container_kwargs(inv, engine_ram_bytes)
            started.container = client.containers.create(described["image_tag"], name=started.name, **kwargs)
            started.container.start()
            # Inside the try: an interrupt while the log follower starts must still remove the container.
            started._follower = threading.Thread(target=started._follow, daemon=True)
            started._follower.start()
        except docker.errors.APIError as exc:
            started.start_error = _explain(exc)
            return started
        except requests.exceptions.RequestException as exc:
            started.start_error = f"the Docker engine did not answer in time ({type(exc).__name__}); is it overloaded?"
            with signals_deferred():
                started.cleanup()
            return started
        except BaseException:
            with signals_deferred():
                started.cleanup()
            raise
        return started

    @property
    def workload(self) -> dict[str, Any]:
        return {"container": self.container.id} if self.container is not None else {}

    def alive(self) -> bool:
        if self.container is None:
            return False
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - gone
            return False
        return self.container.status not in ("exited", "dead")

    def _follow(self) -> None:
        try:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=False):
                self.out.feed(chunk)
        except Exception:  # noqa: BLE001 - the container went away; final logs are read after
            return

    def wait(self) -> Execution:
        if self.container is None:
            return Execution(None, "", "", runner=self.described, start_error=self.start_error)
        timed_out = False
        while self.alive():
            if time.monotonic() >= self._deadline:
                timed_out = True
                self.kill()
                break
            time.sleep(min(WAIT_SLICE_S, max(0.05, self._deadline - time.monotonic())))
        import docker.errors

        try:
            state = self.container.wait(timeout=60)
            if self._follower is not None:
                self._follower.join(timeout=10)
            self.container.reload()
            stdout = self.container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            stderr = self.container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        except docker.errors.NotFound:
            # Removed from outside while it ran (docker rm -f): killed, with what it said until then.
            return Execution(
                exit_code=None,
                stdout=self.out.text(),
                stderr="",
                timed_out=timed_out,
                killed_from_outside=None if self.killed_by_us else signal.SIGKILL,
                runner=self.described | {"container": self.name, "removed_from_outside": True},
            )
        code = state.get("StatusCode")
        oom = bool(self.container.attrs["State"].get("OOMKilled"))
        outside = signal.SIGKILL if code == SIGKILL_EXIT and not (oom or self.killed_by_us) else None
        return Execution(
            exit_code=code,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            oom_killed=oom,
            killed_from_outside=outside,
            runner=self.described | {"container": self.name},
        )

    def kill(self) -> None:
        self.killed_by_us = True
        if self.container is None:
            return
        try:
            self.container.kill()
        except Exception:  # noqa: BLE001 - already stopped or gone
            pass

    def logs(self) -> list[str]:
        if self.container is None:
            return []
        try:
            return self.container.logs(stdout=False, stderr=True).decode("utf-8", "replace").splitlines()[-40:]
        except Exception:  # noqa: BLE001 - gone
            return []

    def published_port(self, container_port: int) -> int | None:
        if self.container is None:
            return None
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - not there yet or gone
            return None
        ports = (self.container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{container_port}/tcp")
        for binding in ports or []:
            if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
                return int(binding["HostPort"])
        return None

    def cleanup(self) -> None:
        """Remove the container. An engine too busy to answer leaves it, labelled with this
        controller, for the next controller start to reap."""
        import docker.errors
        import requests.exceptions

        try:
            if self.container is not None:
                _remove(self.client, self.container.id)
            elif self.name:  # created, maybe, before an interrupt reached us
                _remove(self.client, self.name)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass
