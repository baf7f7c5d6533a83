"""One resolution of image and engine for every command, and values checked where the settings are made.

``run`` with a registered model, ``run`` with a user's own model, ``serve`` and a campaign's
readiness all resolve through ``controller/resolve.py``: an image that cannot run on this hardware
is refused the same way for each (a user's own model used to slip past that refusal). Amounts are
checked as the settings are built, so a request made by a campaign, a test or another command gets
the same refusal as the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from controller import images
from controller.campaigns.file import load_campaign_file
from controller.campaigns.readiness import assess
from controller.errors import UserError
from controller.pipeline import workload_for
from controller.requests import BatchSettings, RunRequest, ServeSettings, Where
from controller.resolve import resolve
from controller.serving.settings import ServingSettings


@pytest.fixture
def onnx_cpu_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnx-cpu's manifest as it reads on hardware that cannot run it."""
    manifests = dict(images.load_manifests())
    manifests["onnx-cpu"] = dataclasses.replace(manifests["onnx-cpu"], unsupported="needs AVX-512 (this CPU has none)")
    monkeypatch.setattr(images, "load_manifests", lambda: manifests)


@pytest.mark.parametrize("model", ["resnet50", "./my-model.onnx", "hf:acme/tiny-vit"])
def test_an_image_that_cannot_run_here_is_refused_for_registered_and_own_models_alike(
    onnx_cpu_unsupported: None, model: str
) -> None:
    with pytest.raises(UserError, match="image onnx-cpu cannot run here: needs AVX-512"):
        resolve(BatchSettings("onnx-cpu", model))


def test_engine_and_own_model_refusals_are_said_by_the_one_resolution(
    tmp_path: Path,
    onnx_file: Path,  # tests/conftest.py: the tiny ONNX classifier
) -> None:
    onnx = onnx_file
    manifest, engine = resolve(BatchSettings("onnx-cpu", str(onnx)))
    assert (manifest.name, engine) == ("onnx-cpu", manifest.engines[0])
    with pytest.raises(UserError, match="does not serve engine 'torch'"):
        resolve(BatchSettings("onnx-cpu", "resnet50", engine="torch"))
    with pytest.raises(UserError, match="nor an existing file or folder"):
        resolve(BatchSettings("onnx-cpu", str(tmp_path / "typo.onnx"), model_size="tiny"))
    # The flags beside a model that exists: after whether the engine can run it (the workload's plan).
    with pytest.raises(UserError, match="--model-size applies to registered models"):
        workload_for(RunRequest(BatchSettings("onnx-cpu", str(onnx), model_size="tiny"))).plan(check_data=False)
    with pytest.raises(UserError, match="--weights .* applies to registered models"):
        workload_for(RunRequest(BatchSettings("onnx-cpu", str(onnx), weights="pretrained"))).plan(check_data=False)
    with pytest.raises(UserError, match="cannot serve language models"):
        resolve(ServeSettings("tf-cpu", "tiny-gpt2"))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BatchSettings("onnx-cpu", "resnet50", batch_size=0), "--batch-size: expected a whole number"),
        (lambda: BatchSettings("onnx-cpu", "resnet50", samples=10**13), "--samples: expected a whole number"),
        (lambda: BatchSettings("onnx-cpu", "resnet50", duration_s=-1.0), "--duration: expected a finite number"),
        (lambda: ServingSettings(max_new_tokens=0), "--max-new-tokens: expected a whole number, at least 1"),
        (lambda: ServingSettings(request_timeout_s=0.0), "--request-timeout: expected a finite number of seconds"),
        (lambda: ServingSettings(cooldown_s=float("nan")), "--cooldown-s: expected a finite number of seconds"),
        (
            lambda: RunRequest(BatchSettings("onnx-cpu", "resnet50", duration_s=60.0), Where(timeout_s=30.0)),
            "--duration 60 s does not fit in the run's timeout of 30 s",
        ),
    ],
)
def test_a_value_is_refused_where_the_settings_are_made(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match=message):
        make()


def test_a_campaign_plan_checks_a_long_duration_against_the_campaigns_own_timeout(tmp_path: Path) -> None:
    path = tmp_path / "long.toml"
    path.write_text(
        '[campaign]\nname = "long"\nmodel_size = "tiny"\nduration_s = 2000\ntimeout_s = 3000\nrunner = "local"\n'
        '[matrix]\nmodels = ["resnet50"]\n[[matrix.configurations]]\nimage = "onnx-cpu"\n'
    )
    combos = assess(load_campaign_file(path), "local").combos
    assert not any("does not fit" in reason for c in combos for reason in c.reasons), combos[0].reasons
