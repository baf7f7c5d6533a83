"""Lock files: images/<name>/requirements.lock, every package an image installs, pinned with hashes.

`python -m controller images relock NAME` resolves images/<name>/requirements.txt with uv for the
image's Python and platform (not this host's) and writes the lock; the Dockerfiles install it with
`pip install --require-hashes --no-deps`, so a build installs exactly these files or fails.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from controller.errors import UserError


class Manifest(Protocol):
    """What a lock is made for: an image's manifest (controller.images.Manifest) as this module reads it."""

    @property
    def name(self) -> str: ...
    @property
    def folder(self) -> Path: ...
    @property
    def python(self) -> str: ...
    @property
    def platform(self) -> str: ...
    @property
    def indexes(self) -> list[str]: ...
    @property
    def from_base(self) -> list[str]: ...

NO_DEPS = "# --no-deps"
# Written into each lock by `images relock`: a changed requirements.txt or manifest makes it stale.
INPUTS_LINE = re.compile(r"^# inputs sha256: ([0-9a-f]{64})$", re.MULTILINE)


def lock_path(manifest: Manifest) -> Path:
    return manifest.folder / "requirements.lock"


def lock_sha256(manifest: Manifest) -> str | None:
    """sha256 of the image's requirements.lock as in this checkout, None when it has none."""
    path = lock_path(manifest)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def lock_inputs_sha256(manifest: Manifest) -> str:
    """What the lock is made from: requirements.txt and the manifest's settings for it."""
    digest = hashlib.sha256((manifest.folder / "requirements.txt").read_bytes())
    settings = [manifest.python, manifest.platform, *manifest.indexes, "|", *sorted(manifest.from_base)]
    digest.update("\n".join(settings).encode())
    return digest.hexdigest()


def lock_problem(manifest: Manifest) -> str | None:
    """Why the image's lock cannot be built from (missing, or older than its inputs), None when current."""
    path = lock_path(manifest)
    if not path.is_file():
        return "has no requirements.lock"
    found = INPUTS_LINE.search(path.read_text())
    if found is None or found.group(1) != lock_inputs_sha256(manifest):
        return "has a requirements.lock older than its requirements.txt or manifest"
    return None


def check_lock(manifest: Manifest) -> None:
    problem = lock_problem(manifest)
    if problem:
        raise UserError(
            f"image {manifest.name} {problem}: run `python -m controller images relock {manifest.name}` "
            "and commit the lock"
        )


def split_requirements(text: str) -> tuple[str, str]:
    """(resolved with dependencies, installed without them): lines marked `# --no-deps` go second."""
    deps, nodeps = [], []
    for line in text.splitlines():
        if NO_DEPS in line and not line.lstrip().startswith("#"):
            nodeps.append(line.split("#", 1)[0].strip())
        else:
            deps.append(line)
    return "\n".join(deps) + "\n", "\n".join(nodeps) + ("\n" if nodeps else "")


def _uv() -> list[str]:
    uv = shutil.which("uv")
    if uv is None:
        raise UserError("relock needs uv: python -m pip install -e '.[test]' (or pip install uv)")
    return [uv]


def _compile(
    manifest: Manifest, requirements: str, no_deps: bool, find_links: list[Path], say: Callable[[str], None]
) -> str:
    """One `uv pip compile` run on ``requirements``; returns its output (no header)."""
    with tempfile.TemporaryDirectory(prefix="joulebench-relock-") as tmp:
        # A fixed relative name, so that the lock's `# via -r requirements.txt` lines never name tmp.
        (Path(tmp) / "requirements.txt").write_text(requirements)
        cmd = [*_uv(), "pip", "compile", "requirements.txt", *compile_options(manifest), "--quiet"]
        cmd += ["--no-deps"] if no_deps else []
        cmd += [f"--no-emit-package={name}" for name in manifest.from_base]
        if find_links:
            # A host that cannot reach the manifest's indexes offers the same wheels from a folder.
            cmd += [f"--find-links={link}" for link in find_links]
        else:
            cmd += [f"--extra-index-url={url}" for url in manifest.indexes]
            cmd += ["--index-strategy=unsafe-best-match"] if manifest.indexes else []
        say("  " + " ".join(cmd[1:]))
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise UserError(f"relocking {manifest.name} failed (uv exit {proc.returncode}):\n{last}")
    return proc.stdout


def compile_options(manifest: Manifest) -> list[str]:
    return [
        "--generate-hashes",
        "--no-header",
        "--no-config",  # no uv.toml of this host's changes the result
        f"--python-version={manifest.python}",
        f"--python-platform={manifest.platform}",
    ]


def _uv_version() -> str:
    out = subprocess.run([*_uv(), "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[1] if len(out.split()) > 1 else "unknown"


def header(manifest: Manifest, find_links_used: list[str]) -> list[str]:
    glibc = manifest.platform.rsplit("manylinux_", 1)[-1].replace("_", ".")
    lines = [
        f"# images/{manifest.name}/requirements.lock: every Python package the {manifest.name} image installs,",
        "# pinned with the sha256 of each file, for the image's own interpreter and platform, not this host's:",
        f"#   CPython {manifest.python}, linux x86_64, manylinux wheels for glibc {glibc} "
        f"(--python-platform {manifest.platform}).",
        f"# Made by `python -m controller images relock {manifest.name}` from requirements.txt with uv "
        f"{_uv_version()}:",
        f"#   uv pip compile {' '.join(compile_options(manifest))}",
        "# Installed by the Dockerfile with `pip install --require-hashes --no-deps -r requirements.lock`:",
        "# every package is listed here, and pip refuses a file whose hash is not.",
    ]
    if manifest.indexes:
        lines.append(f"# Packages not on PyPI come from {', '.join(manifest.indexes)} (the manifest's indexes).")
    if find_links_used:
        lines += [
            f"# {', '.join(find_links_used)}: taken from a local wheel folder standing in for those indexes",
            "# (unreachable where this lock was made). The hash is that file's, not compared with the index's",
            "# copy: a build from the index installs it only if the two are byte-identical, and stops with a",
            "# hash mismatch otherwise.",
        ]
    if manifest.from_base:
        lines.append(f"# Not listed (the base image's, pinned by its digest): {', '.join(sorted(manifest.from_base))}.")
    lines.append(f"# inputs sha256: {lock_inputs_sha256(manifest)}")
    return lines


def _names_from_local_links(body: str, find_links: list[Path]) -> list[str]:
    """Pinned packages whose version carries a local label (torch==2.13.0+cpu): those came from a folder."""
    if not find_links:
        return []
    return sorted({m.group(1) for m in re.finditer(r"^([A-Za-z0-9._-]+)==\S*\+\S*", body, re.MULTILINE)})


def relock(manifest: Manifest, find_links: list[Path] | None = None, say: Callable[[str], None] = print) -> Path:
    """Resolve the image's requirements.txt and write its requirements.lock; return its path."""
    links = list(find_links or [])
    for link in links:
        if not link.is_dir():
            raise UserError(f"--find-links {link}: not a folder")
    deps, nodeps = split_requirements((manifest.folder / "requirements.txt").read_text())
    body = _compile(manifest, deps, False, links, say)
    if nodeps:
        body += f"\n# Installed without their dependencies (marked `{NO_DEPS}` in requirements.txt, which says why):\n"
        body += _compile(manifest, nodeps, True, links, say)
    text = "\n".join(header(manifest, _names_from_local_links(body, links))) + "\n" + body
    path = lock_path(manifest)
    path.write_text(text)
    return path


def locked_versions(text: str) -> dict[str, str]:
    """{normalised name: version} of a lock file's pins."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", text, re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}
