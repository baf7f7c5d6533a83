"""Forwarding the host's pip setup into an image build: indexes, CA bundle, local wheels."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from controller.errors import UserError


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
    indexes: list[str] | None = None,
) -> None:
    """Fill the build context's pip/ folder: pip.conf, the CA bundle, wheels from local find-links.

    ``indexes`` (the manifest's, where its lock's packages come from besides PyPI) are used unless
    the host's pip configuration is forwarded: then the host says where packages come from.
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
    if _remote(settings.get("index-url", "")):
        lines.append(f"index-url = {settings['index-url']}")
    extra = [u for u in settings.get("extra-index-url", "").split() if _remote(u)]
    if pip_config is None:
        extra = list(indexes or [])
    if extra:
        lines.append("extra-index-url = " + " ".join(extra))
    links = _forward_links(settings.get("find-links", ""), _requirement_names(requirements), dest, say)
    if links:
        lines.append("find-links = " + " ".join(links))
    (dest / "pip.conf").write_text("\n".join(lines) + "\n")


def _remote(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _forward_links(find_links: str, wanted: set[str], dest: Path, say: Callable[[str], None]) -> list[str]:
    """Remote find-links as they are; local wheel folders as copies of the wheels the image needs."""
    links = []
    for link in find_links.split():
        if _remote(link):
            links.append(link)
            continue
        folder = Path(link.removeprefix("file://"))
        wheels = [w for w in folder.glob("*.whl") if _norm(w.name.split("-")[0]) in wanted] if folder.is_dir() else []
        for wheel in wheels:
            (dest / "wheels").mkdir(exist_ok=True)
            shutil.copy(wheel, dest / "wheels" / wheel.name)
            say(f"forwarding local wheel {wheel.name}")
    if (dest / "wheels").is_dir():
        links.append("/opt/build/pip/wheels")
    return links
