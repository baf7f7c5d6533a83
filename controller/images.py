"""Image manifests (images/<name>/manifest.toml), their status in Docker, and building them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from controller.errors import UserError
from controller.image_lock import check_lock, lock_path, lock_problem, lock_sha256
from controller.image_pip import host_pip_config, write_pip_dir

__all__ = ["host_pip_config", "write_pip_dir"]  # imported from here by runs and tests

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
    digest: str = ""  # the base's registry digest (sha256:...); `images build` refuses a base without one
    digest_verified: bool = False  # False: taken from public sources, not yet confirmed by `images lock`
    # What requirements.lock is resolved for: the base's Python and glibc (manylinux_2_36: bookworm).
    python: str = "3.11"
    platform: str = "x86_64-manylinux_2_36"
    indexes: list[str] = field(default_factory=list)  # package indexes besides PyPI (the lock's sources)
    from_base: list[str] = field(default_factory=list)  # packages the base provides: never in the lock

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
        digest.update(str(path.relative_to(REPO if path.is_relative_to(REPO) else IMAGES_DIR.parent)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _package_files() -> list[Path]:
    return [p for pkg in IMAGE_PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


def package_sources_hash() -> str:
    """Hash of the harness and suite sources: what builds models and converts them."""
    return _hash_files(_package_files())


def source_hash(manifest: Manifest) -> str:
    """Hash of everything that goes into the image, to tell a stale build from a current one."""
    extra = [p for p in (manifest.folder / "check.py", manifest.folder / "requirements.lock") if p.is_file()]
    return _hash_files([manifest.dockerfile, manifest.folder / "requirements.txt", *extra, *_package_files()])


def build_context(
    manifest: Manifest,
    ca_bundle: Path | None,
    pip_config: dict[str, str] | None,
    say: Callable[[str], None],
) -> Path:
    """A temporary build context: Dockerfile, build/ (requirements, pip/), app/ (harness, suite)."""
    ctx = Path(tempfile.mkdtemp(prefix=f"joulebench-build-{manifest.name}-"))
    shutil.copy(manifest.dockerfile, ctx / "Dockerfile")
    requirements = lock_path(manifest)
    (ctx / "build").mkdir()
    shutil.copy(requirements, ctx / "build" / "requirements.lock")
    if (manifest.folder / "check.py").is_file():  # build-time check of what the image must contain
        shutil.copy(manifest.folder / "check.py", ctx / "build" / "check.py")
    for pkg in IMAGE_PACKAGES:
        shutil.copytree(REPO / pkg, ctx / "app" / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    write_pip_dir(ctx / "build" / "pip", requirements, ca_bundle, pip_config, say, manifest.indexes)
    return ctx


@dataclass(frozen=True)
class BasePin:
    """What an image is built FROM, and how that base is pinned."""

    ref: str  # the FROM reference
    digest: str | None  # a registry digest, or a local base's image id (its own content address)
    kind: str  # "registry digest" | "local image id" | "unpinned"
    reason: str | None = None  # why unpinned


def resolve_base(client: Any, manifest: Manifest, base_image: str | None, unpinned: bool) -> BasePin:
    """The base to build from: pinned by a digest or image id, or unpinned only when asked."""
    if base_image and "@sha256:" in base_image:
        return BasePin(base_image, base_image.split("@", 1)[1], "registry digest")
    if base_image:
        # A base built on this host (no registry) is pinned by its image id, a hash of its content.
        local = _local_image_id(client, base_image)
        if local:
            return BasePin(base_image, local, "local image id")
        why = f"--base-image {base_image} has no digest and is no local image"
    elif manifest.digest:
        return BasePin(f"{manifest.base}@{manifest.digest}", manifest.digest, "registry digest")
    else:
        why = f"images/{manifest.name}/manifest.toml has no digest for {manifest.base}"
    if unpinned:
        return BasePin(base_image or manifest.base, None, "unpinned", f"{why}; built with --unpinned")
    raise UserError(
        f"image {manifest.name}'s base is not pinned by digest ({why}): run `python -m controller images lock "
        f"{manifest.name}` on a host that can reach the registry and commit the manifest, or pass "
        "--base-image NAME@sha256:... or a local base image, or build it anyway with --unpinned "
        "(the image and its runs' records then say unpinned)"
    )


def _local_image_id(client: Any, ref: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None


def build_labels(manifest: Manifest, pin: BasePin) -> dict[str, str]:
    """The provenance every image carries, written at build time (see image_provenance)."""
    return {
        "JOULEBENCH_IMAGE": manifest.name,
        "JOULEBENCH_SOURCE": source_hash(manifest),
        "JOULEBENCH_HARNESS": package_sources_hash(),
        "JOULEBENCH_LOCK": lock_sha256(manifest) or "",
        "BASE_IMAGE": pin.ref,
        "BASE_DIGEST": pin.digest or "",
        "BASE_PIN": pin.kind if pin.reason is None else f"{pin.kind}: {pin.reason}",
        "LOCK_PYTHON": manifest.python,
    }


def preflight(manifest: Manifest, base_image: str | None, unpinned: bool) -> None:
    """What refuses a build without asking Docker: unsupported, unpinned base, missing or stale lock."""
    if manifest.unsupported:
        raise UserError(f"image {manifest.name} cannot be built here: {manifest.unsupported}")
    if not base_image:
        resolve_base(None, manifest, None, unpinned)
    check_lock(manifest)


def build_image(
    client: Any,
    manifest: Manifest,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    pip_config: dict[str, str] | None = None,
    network: str | None = None,
    say: Callable[[str], None] = print,
    unpinned: bool = False,
) -> str:
    """Build one image from its lock; stream the build's output through ``say``; return the image id."""
    preflight(manifest, base_image, unpinned)
    pin = resolve_base(client, manifest, base_image, unpinned)
    if pin.kind == "registry digest" and not base_image and not manifest.digest_verified:
        say(f"note: {manifest.name}'s base digest is from public sources, not yet confirmed by `images lock`")
    ctx = build_context(manifest, ca_bundle, pip_config, say)
    say(f"building {manifest.tag} from {pin.ref} ({pin.kind}; context {ctx})")
    try:
        # Labels go through build arguments into one LABEL instruction (one layer).
        stream = client.api.build(
            path=str(ctx),
            tag=manifest.tag,
            buildargs=build_labels(manifest, pin),
            network_mode=network,
            rm=True,
            forcerm=True,
            decode=True,
        )
        image_id = _follow(stream, manifest, say)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    if image_id is None:
        image_id = client.images.get(manifest.tag).id
    return str(image_id)


def _follow(stream: Any, manifest: Manifest, say: Callable[[str], None]) -> str | None:
    image_id = None
    last: list[str] = []
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
    return image_id


DIGEST_LINE = re.compile(r'^digest\s*=\s*"[^"]*".*$', re.MULTILINE)
VERIFIED_LINE = re.compile(r"^digest_verified\s*=.*$", re.MULTILINE)


def write_digest(manifest: Manifest, digest: str, verified: bool = True) -> Path:
    """Pin the manifest's base to ``digest`` (rewrites its ``digest`` and ``digest_verified`` lines)."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise UserError(f"not a registry digest: {digest!r} (expected sha256:<64 hex digits>)")
    path = manifest.folder / "manifest.toml"
    text = path.read_text()
    for pattern, line in (
        (DIGEST_LINE, f'digest = "{digest}"'),
        (VERIFIED_LINE, f"digest_verified = {'true' if verified else 'false'}  # by `images lock`"),
    ):
        text = pattern.sub(line, text, count=1) if pattern.search(text) else text.rstrip("\n") + "\n" + line + "\n"
    path.write_text(text)
    return path


def lock_base(client: Any, manifest: Manifest) -> tuple[str, str | None]:
    """Ask the registry for the digest of the manifest's base tag and pin it; (digest, the one it replaced)."""
    import docker.errors

    try:
        found = client.api.inspect_distribution(manifest.base)
    except docker.errors.APIError as exc:
        raise UserError(
            f"cannot resolve {manifest.base} in its registry ({exc.explanation or exc}); "
            "lock images on a host that can reach the registry (and is logged in to it where needed)"
        ) from None
    digest = str(found["Descriptor"]["digest"])
    write_digest(manifest, digest, verified=True)
    return digest, manifest.digest if manifest.digest and manifest.digest != digest else None


def image_provenance(image_attrs: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
    """What a run's record says about its image, from the labels written at build time.

    base_digest is the base's registry digest, or the image id of a base built on the host
    (base_digest_kind says which); when None, base_digest_reason says why ("unpinned: ...").
    lock_sha256 is the sha256 of the requirements.lock the image was installed from.
    """
    labels = (image_attrs.get("Config") or {}).get("Labels") or {}
    kind, _, reason = (labels.get("joulebench.base.pin") or "").partition(": ")
    digest = labels.get("joulebench.base.digest") or None
    lock = labels.get("joulebench.lock") or None
    old = "built before images carried provenance labels: rebuild it (python -m controller images build)"
    return {
        "image_id": image_attrs.get("Id"),
        "base_image": labels.get("joulebench.base"),
        "base_digest": digest,
        "base_digest_kind": kind or None,
        "base_digest_reason": None if digest else (f"unpinned: {reason}" if kind == "unpinned" else old),
        "lock_sha256": lock,
        "lock_sha256_reason": None if lock else old,
        # False: this checkout's lock differs from the one the image was built from.
        "lock_matches_checkout": None if lock is None else lock == lock_sha256(manifest),
        "harness_source_hash": labels.get("joulebench.harness"),
    }


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
    provenance = image_provenance(image.attrs, manifest)
    return {
        "built": True,
        "image_id": image.id,
        "stale": labels.get("joulebench.source") != source_hash(manifest),
        "digest": (image.attrs.get("RepoDigests") or [None])[0],
        "built_base_digest": provenance["base_digest"] or provenance["base_digest_reason"],
        "built_lock_sha256": provenance["lock_sha256"],
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
                "digest_verified": m.digest_verified,
                "lock": lock_problem(m) or "current",
                **image_status(client, m),
                "unsupported": m.unsupported,
            }
        )
    return rows


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)
