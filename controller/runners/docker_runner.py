"""The harness in its image, through the Docker SDK: labelled, unprivileged, always removed."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from controller.errors import UserError
from controller.images import get_manifest, image_provenance, source_hash
from controller.runners.base import Execution, Invocation, LineSplitter, Mount

LABEL = "joulebench"
OWNER_LABEL = "joulebench.owner"
CONTAINER_USER = "10001:10001"
WAIT_SLICE_S = 1.0


def connect() -> Any:
    """A Docker client that answered a ping, or a UserError saying how to get one."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=120)
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


def reap_orphans(client: Any) -> list[str]:
    """Remove joulebench containers whose controller process on this host is gone."""
    removed = []
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        owner = container.labels.get(OWNER_LABEL, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        container.remove(force=True)
        removed.append(container.name)
    return removed


def _unreadable_by_others(path: str, limit: int = 10000) -> list[str]:
    """Files and folders under a mount that a user other than their owner cannot read."""

    def hidden(p: str, need: int) -> bool:
        return os.stat(p).st_mode & need != need

    if not os.path.isdir(path):
        return [path] if hidden(path, 0o004) else []
    found = [path] if hidden(path, 0o005) else []
    for count, (root, dirs, files) in enumerate(os.walk(path)):
        found += [os.path.join(root, d) for d in dirs if hidden(os.path.join(root, d), 0o005)]
        found += [os.path.join(root, f) for f in files if hidden(os.path.join(root, f), 0o004)]
        if count >= limit:
            break
    return found


def _network_mode(network: bool | str) -> str | None:
    if network is False:
        return "none"
    return None if network is True else network


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DockerRunner:
    kind = "docker"

    def __init__(self, client: Any | None = None) -> None:
        self.client = client or connect()
        self.reaped = reap_orphans(self.client)

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

    def has_bridge(self) -> bool:
        """Whether the engine has a bridge network (containers can publish ports on it)."""
        return bool(self.client.networks.list(names=["bridge"]))

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

    def execute(self, inv: Invocation) -> Execution:
        import docker.types

        described = self.describe(inv.image)
        if os.getuid() == 0:  # the container runs as CONTAINER_USER, not as the files' owner
            hidden = [p for m in inv.mounts if m.read_only for p in _unreadable_by_others(m.host)]
            if hidden:
                return Execution(
                    None,
                    "",
                    "",
                    runner=described,
                    start_error=(
                        f"the container's unprivileged user ({CONTAINER_USER}) cannot read "
                        f"{', '.join(hidden[:5])}{' ...' if len(hidden) > 5 else ''}: make them "
                        "readable (chmod -R a+rX PATH) or run the controller as their owner"
                    ),
                )
        kwargs: dict[str, Any] = {
            "command": inv.argv,
            "labels": {LABEL: "1", OWNER_LABEL: _owner(), **inv.labels},
            "environment": inv.env,
            "volumes": {m.host: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in inv.mounts},
            "network_mode": _network_mode(inv.network),
            "user": CONTAINER_USER if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}",
            "read_only": True,
            "tmpfs": {"/tmp": "exec"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "detach": True,
        }
        if inv.ports:
            kwargs["ports"] = {f"{port}/tcp": (address, None) for port, address in inv.ports.items()}
        if inv.memory:
            kwargs["mem_limit"] = inv.memory
            kwargs["memswap_limit"] = inv.memory  # no swap: over the limit means killed
        if inv.gpu:
            kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        import docker.errors

        out = LineSplitter(inv.on_line)
        timed_out = False
        try:
            container = self.client.containers.create(described["image_tag"], **kwargs)
        except docker.errors.APIError as exc:
            return Execution(None, "", "", runner=described, start_error=_explain(exc))
        try:
            try:
                container.start()
            except docker.errors.APIError as exc:
                return Execution(None, "", "", runner=described, start_error=_explain(exc))
            if inv.on_start:
                inv.on_start({"container": container.id})
            follower = threading.Thread(target=self._follow, args=(container, out), daemon=True)
            follower.start()
            deadline = time.monotonic() + inv.timeout_s
            while True:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                    container.kill()
                    break
                time.sleep(min(WAIT_SLICE_S, max(0.05, deadline - time.monotonic())))
            state = container.wait(timeout=60)
            if inv.on_exit:
                inv.on_exit()
            follower.join(timeout=10)
            container.reload()
            stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
            stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            return Execution(
                exit_code=state.get("StatusCode"),
                stdout=stdout,
                stderr=stderr,
                timed_out=timed_out,
                oom_killed=bool(container.attrs["State"].get("OOMKilled")),
                runner=described | {"container": container.name, "memory_limit": inv.memory},
            )
        finally:
            container.remove(force=True)

    @staticmethod
    def _follow(container: Any, out: LineSplitter) -> None:
        try:
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=False):
                out.feed(chunk)
        except Exception:  # noqa: BLE001 - the container went away; final logs are read after
            return
