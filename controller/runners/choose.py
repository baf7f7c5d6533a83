"""Which runner a run gets: the one asked for, or with ``auto`` Docker when it can serve the images."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from controller.errors import UserError
from controller.images import get_manifest
from controller.runners.base import Runner

if TYPE_CHECKING:
    from controller.progress import Progress

RUNNERS = ("auto", "docker", "local")
NO_REGISTRY_HINT = (
    "without a container registry, build a base image with images/base/build-local-base.sh and pass it "
    "as --base-image to `python -m controller images build`; or run with --runner local"
)


def choose_runner(
    kind: str, images: list[str], note: Callable[[str], None], progress: Progress | None = None
) -> Runner:
    """The runner asked for; ``auto``: Docker when an engine answers and the images exist or build.

    ``note`` receives one line saying which runner was chosen when that was not asked for;
    ``progress`` shows an image built on first use, step by step.
    """
    from controller.runners.local import LocalRunner

    if kind not in RUNNERS:
        raise UserError(f"unknown runner {kind!r}; valid runners: {', '.join(RUNNERS)}")
    if kind == "local":
        return LocalRunner()
    from controller.runners.docker_runner import DockerRunner, connect

    if kind == "docker":
        runner = DockerRunner(note=note)
        for image in images:
            runner.image(image)
        return runner
    try:
        client = connect()
    except UserError:
        note("runner: local (no Docker engine answers)")
        return LocalRunner()
    runner = DockerRunner(client, note)
    for image in images:
        try:
            runner.image(image)
        except UserError:
            why = _build_for_auto(client, image, note, progress)
            if why is not None:
                note(f"runner: local (image {image} is not built and building it failed: {why}; {NO_REGISTRY_HINT})")
                return LocalRunner()
    note("runner: docker")
    return runner


def stale_images(runner: Runner, images: list[str]) -> list[str]:
    """Images built from other harness/suite sources than this checkout's."""
    if runner.kind != "docker":
        return []
    return [image for image in dict.fromkeys(images) if runner.describe(image)["image_stale"]]


def _build_for_auto(
    client: object, image: str, note: Callable[[str], None], progress: Progress | None = None
) -> str | None:
    """Build a missing image with this host's pip settings; None when built, else the first line of why not."""
    from contextlib import nullcontext

    import docker.errors

    from controller.images import build_image, host_pip_config

    manifest = get_manifest(image)
    note(f"image {manifest.tag} is not built: building it now (first use; this takes minutes) ...")
    steps = progress.step(f"building image {manifest.tag}") if progress is not None else nullcontext()
    try:
        with steps:
            build_image(client, manifest, pip_config=host_pip_config(), say=_build_steps(progress))
    except (UserError, docker.errors.DockerException) as exc:
        text = str(exc).strip()
        return text.splitlines()[0][:200] if text else type(exc).__name__
    return None


def _build_steps(progress: Progress | None) -> Callable[[str], None]:
    """The build's "Step 4/9 : RUN ..." lines as where the build stands; the rest goes to its log only."""

    def say(text: str) -> None:
        if progress is not None and text.startswith("Step "):
            progress.detail(text if len(text) <= 100 else text[:99] + "…")

    return say
