"""Image manifests (images/<name>/manifest.toml), their status in Docker, and building them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from controller.errors import UserError

REPO = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO / "images"
# Another prefix keeps a second checkout's images apart from this one's (JOULEBENCH_TAG_PREFIX).
TAG_PREFIX = os.environ.get("JOULEBENCH_TAG_PREFIX", "joulebench/")
# Copied into every image: the harness and the suite it loads.
IMAGE_PACKAGES = ("harness", "suite")


@dataclass(frozen=True)
class Manifest:
    name: str
    engines: list[str]
    provider: str
    gpu: bool
    base: str
    dockerfile: Path
    why: str = ""
    converts: list[str] = field(default_factory=list)
    unsupported: str | None = None  # set when the combination cannot work on current hardware
    digest: str = ""  # the base's registry digest (sha256:...); GPU images build only when pinned

    @property
    def pinned_base(self) -> str | None:
        """``base@digest`` when the manifest pins its base, else None."""
        return f"{self.base}@{self.digest}" if self.digest else None

    @property
    def tag(self) -> str:
        return f"{TAG_PREFIX}{self.name}:latest"

    @property
    def folder(self) -> Path:
        return IMAGES_DIR / self.name


def load_manifests() -> dict[str, Manifest]:
    found = {}
    for path in sorted(IMAGES_DIR.glob("*/manifest.toml")):
        data = tomllib.loads(path.read_text())
        dockerfile = data.pop("dockerfile", None)
        data["dockerfile"] = IMAGES_DIR / dockerfile if dockerfile else path.parent / "Dockerfile"
        found[data["name"]] = Manifest(**data)
    return found


def get_manifest(name: str) -> Manifest:
    manifests = load_manifests()
    if name not in manifests:
        raise UserError(f"unknown image {name!r}; valid images: {', '.join(sorted(manifests))}")
    return manifests[name]


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _package_files() -> list[Path]:
    return [p for pkg in IMAGE_PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


def package_sources_hash() -> str:
    """Hash of the harness and suite sources: what builds models and converts them."""
    return _hash_files(_package_files())


def source_hash(manifest: Manifest) -> str:
    """Hash of everything that goes into the image, to tell a stale build from a current one."""
    extra = [manifest.folder / "check.py"] if (manifest.folder / "check.py").is_file() else []
    return _hash_files([manifest.dockerfile, manifest.folder / "requirements.txt", *extra, *_package_files()])


# --- forwarding the host's pip setup into a build -----------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match and not line.lstrip().startswith("#"):
            names.add(_norm(match.group(1)))
    return names


def host_pip_config() -> dict[str, str]:
    """The host's effective pip settings (files and PIP_* variables), as `pip config list` shows."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    settings: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        key = key.split(".")[-1].strip()
        settings[key] = value.strip().strip("'\"")
    for key in ("index-url", "extra-index-url", "find-links", "cert"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            settings[key] = env
    return settings


def write_pip_dir(
    dest: Path,
    requirements: Path,
    ca_bundle: Path | None,
    pip_config: dict[str, str] | None,
    say: Callable[[str], None],
) -> None:
    """Fill the build context's pip/ folder: pip.conf, the CA bundle, wheels from local find-links.

    Only what pip inside the build can reach is forwarded: http(s) indexes, and local wheel
    folders (copied, only the wheels the image's requirements name). file:// indexes are skipped.
    """
    dest.mkdir(parents=True)
    lines = ["[global]", "disable-pip-version-check = true"]
    settings = dict(pip_config or {})
    if ca_bundle is None and settings.get("cert"):
        ca_bundle = Path(settings["cert"])
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            raise UserError(f"CA bundle {ca_bundle} is not a file")
        shutil.copy(ca_bundle, dest / "ca.pem")
        lines.append("cert = /opt/build/pip/ca.pem")
    remote = lambda url: url.startswith(("http://", "https://"))  # noqa: E731
    if remote(settings.get("index-url", "")):
        lines.append(f"index-url = {settings['index-url']}")
    extra = [u for u in settings.get("extra-index-url", "").split() if remote(u)]
    if extra:
        lines.append("extra-index-url = " + " ".join(extra))
    wanted = _requirement_names(requirements)
    links = []
    for link in settings.get("find-links", "").split():
        if remote(link):
            links.append(link)
            continue
        folder = Path(link.removeprefix("file://"))
        if not folder.is_dir():
            continue
        wheels = [w for w in folder.glob("*.whl") if _norm(w.name.split("-")[0]) in wanted]
        if wheels:
            (dest / "wheels").mkdir(exist_ok=True)
            for wheel in wheels:
                shutil.copy(wheel, dest / "wheels" / wheel.name)
                say(f"forwarding local wheel {wheel.name}")
    if (dest / "wheels").is_dir():
        links.append("/opt/build/pip/wheels")
    if links:
        lines.append("find-links = " + " ".join(links))
    (dest / "pip.conf").write_text("\n".join(lines) + "\n")


def build_context(
    manifest: Manifest,
    ca_bundle: Path | None,
    pip_config: dict[str, str] | None,
    say: Callable[[str], None],
) -> Path:
    """A temporary build context: Dockerfile, build/ (requirements, pip/), app/ (harness, suite)."""
    ctx = Path(tempfile.mkdtemp(prefix=f"joulebench-build-{manifest.name}-"))
    shutil.copy(manifest.dockerfile, ctx / "Dockerfile")
    requirements = manifest.folder / "requirements.txt"
    (ctx / "build").mkdir()
    shutil.copy(requirements, ctx / "build" / "requirements.txt")
    if (manifest.folder / "check.py").is_file():  # build-time check of what the image must contain
        shutil.copy(manifest.folder / "check.py", ctx / "build" / "check.py")
    for pkg in IMAGE_PACKAGES:
        shutil.copytree(REPO / pkg, ctx / "app" / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    write_pip_dir(ctx / "build" / "pip", requirements, ca_bundle, pip_config, say)
    return ctx


def build_image(
    client: Any,
    manifest: Manifest,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    pip_config: dict[str, str] | None = None,
    network: str | None = None,
    say: Callable[[str], None] = print,
) -> str:
    """Build one image; stream the build's output through ``say``; return the image id."""
    if manifest.unsupported:
        raise UserError(f"image {manifest.name} cannot be built here: {manifest.unsupported}")
    base = base_image or manifest.pinned_base or manifest.base
    if manifest.gpu and not base_image and not manifest.pinned_base:
        raise UserError(
            f"image {manifest.name}'s base {manifest.base} is not pinned by digest "
            f"(images/{manifest.name}/manifest.toml has no digest): run `python -m controller images lock "
            f"{manifest.name}` on a host that can reach the registry, commit the manifest, then build "
            "(or pass --base-image NAME@sha256:... explicitly)"
        )
    ctx = build_context(manifest, ca_bundle, pip_config, say)
    say(f"building {manifest.tag} from {base} (context {ctx})")
    image_id = None
    last: list[str] = []
    try:
        stream = client.api.build(
            path=str(ctx),
            tag=manifest.tag,
            # Labels go through build arguments into one LABEL instruction (one layer).
            buildargs={
                "BASE_IMAGE": base,
                "JOULEBENCH_IMAGE": manifest.name,
                "JOULEBENCH_SOURCE": source_hash(manifest),
            },
            network_mode=network,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise UserError(
                    f"building {manifest.name} failed: {chunk['error'].strip()}\n"
                    + "\n".join(last[-15:])
                    + "\nBehind a TLS proxy or a local mirror, add --pip-config host "
                    "(and --network host where the engine has no bridge network)."
                )
            text = chunk.get("stream", "").rstrip()
            if text:
                last.append(text)
                if text.startswith("Step ") or "Successfully" in text:
                    say(text)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    if image_id is None:
        image_id = client.images.get(manifest.tag).id
    return str(image_id)


DIGEST_LINE = re.compile(r'^digest\s*=\s*"[^"]*"', re.MULTILINE)


def write_digest(manifest: Manifest, digest: str) -> Path:
    """Pin the manifest's base to ``digest`` (rewrites its ``digest = "..."`` line)."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise UserError(f"not a registry digest: {digest!r} (expected sha256:<64 hex digits>)")
    path = manifest.folder / "manifest.toml"
    text = path.read_text()
    line = f'digest = "{digest}"'
    text = DIGEST_LINE.sub(line, text, count=1) if DIGEST_LINE.search(text) else text.rstrip("\n") + "\n" + line + "\n"
    path.write_text(text)
    return path


def lock_base(client: Any, manifest: Manifest) -> str:
    """Ask the registry for the digest of the manifest's base tag and pin it."""
    import docker.errors

    try:
        found = client.api.inspect_distribution(manifest.base)
    except docker.errors.APIError as exc:
        raise UserError(
            f"cannot resolve {manifest.base} in its registry ({exc.explanation or exc}); "
            "lock images on a host that can reach the registry (and is logged in to it where needed)"
        ) from None
    digest = str(found["Descriptor"]["digest"])
    write_digest(manifest, digest)
    return digest


def image_status(client: Any | None, manifest: Manifest) -> dict[str, Any]:
    """Built or not, its id, and whether the sources changed since it was built."""
    if client is None:
        return {"built": None, "image_id": None, "stale": None}
    import docker.errors

    try:
        image = client.images.get(manifest.tag)
    except docker.errors.ImageNotFound:
        return {"built": False, "image_id": None, "stale": None}
    labels = image.labels or {}
    return {
        "built": True,
        "image_id": image.id,
        "stale": labels.get("joulebench.source") != source_hash(manifest),
        "digest": (image.attrs.get("RepoDigests") or [None])[0],
    }


def describe(manifests: dict[str, Manifest], client: Any | None) -> list[dict[str, Any]]:
    rows = []
    for m in manifests.values():
        rows.append(
            {
                "name": m.name,
                "engines": m.engines,
                "provider": m.provider,
                "gpu": m.gpu,
                "base": m.pinned_base or m.base,
                "pinned": bool(m.digest),
                **image_status(client, m),
                "unsupported": m.unsupported,
            }
        )
    return rows


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)
