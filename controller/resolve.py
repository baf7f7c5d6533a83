"""Which image and engine a run uses, and what a user's own model refuses: one place for ``run``,
``serve``, a campaign's readiness (``campaign plan``) and every command that asks what runs where.

:func:`resolve` gives the image's manifest and the engine, or one line (UserError, exit 2) saying
why not: an unknown image, an engine the image lacks, an engine that cannot serve language models,
an image that cannot run on this hardware, a flag that applies to registered models only. The
workloads' plans start from it (``controller/batch.py``, ``controller/serving/workload.py``), so the
refusals are the same wherever a run is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.errors import UserError
from controller.images import Manifest, get_manifest

if TYPE_CHECKING:
    from controller.requests import BatchSettings, ServeSettings


def resolve(what: BatchSettings | ServeSettings) -> tuple[Manifest, str]:
    """(manifest, engine) of a run of ``what``, or UserError naming what does not fit."""
    from controller.requests import ServeSettings

    serving = isinstance(what, ServeSettings)
    manifest = get_manifest(what.image)
    engine = engine_of(manifest, what.engine)
    if engine not in manifest.engines:
        raise UserError(
            f"image {what.image} does not serve engine {engine!r}; valid engines for it: {', '.join(manifest.engines)}"
        )
    if serving:
        from controller.serving.settings import EXPORT_FORMATS

        if engine not in EXPORT_FORMATS:
            raise UserError(
                f"engine {engine} cannot serve language models; serving engines: {', '.join(EXPORT_FORMATS)}"
            )
    if manifest.unsupported:
        raise UserError(f"image {what.image} cannot run here: {manifest.unsupported}")
    if not serving and is_own_model(what.model):
        own_model_name(what)  # type: ignore[arg-type]
    return manifest, engine


def engine_of(manifest: Manifest, asked: str | None) -> str:
    """The engine a run on this image uses: the one asked for, else the image's first."""
    return asked or manifest.engines[0]


def is_own_model(text: str) -> bool:
    """A model the user brings (a file, a folder, ``hf:ORG/NAME``) rather than a registered name."""
    from suite.models import MODELS

    return text not in MODELS or text.startswith(("hf:", ".", "/", "~"))


def own_model_name(what: BatchSettings) -> None:
    """A user's own model that is not there (a typo, a missing file): named first, before the flags beside it."""
    from suite.sources import SourceError, check_model_name

    try:
        check_model_name(what.model)
    except SourceError as exc:
        raise UserError(str(exc)) from None


def own_model_flags(what: BatchSettings) -> None:
    """A user's own model brings its weights and definition: the flags that choose them for registered
    models are refused. Checked after whether the engine can run the model at all (the workload's plan)."""
    for flag, value, default in (("--weights", what.weights, "random"), ("--source", what.source, None)):
        if value != default:
            raise UserError(
                f"{flag} (a campaign's `{flag[2:]}`) applies to registered models; {what.model} brings its own "
                "weights and definition: leave it out for this model"
            )
    if what.model_size != "full":
        raise UserError(f"--model-size applies to registered models; {what.model} is run as it is")
