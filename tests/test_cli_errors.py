"""User errors: one clear message naming the valid choices, exit code 2, never a traceback."""

import pytest


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--image", "onnx-gpu-x", "--model", "resnet50"],
            ["unknown image", "onnx-cpu", "torch-cpu"],
        ),
        (
            ["--image", "onnx-cpu", "--model", "resnet5"],
            ["unknown model", "resnet50", "mobilenetv2"],
        ),
        (["--image", "onnx-cpu", "--model", "resnet50", "--engine", "torch"], ["onnxruntime"]),
        (["--image", "onnx-cpu", "--model", "resnet50", "--model-size", "huge"], ["full", "tiny"]),
        (
            ["--image", "onnx-cpu", "--model", "resnet50", "--weights", "/no/such.pt"],
            ["pretrained"],
        ),
    ],
)
def test_bad_input_names_the_valid_choices(cli, args, expected):
    proc = cli("run", *args, "--runner", "local")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for word in expected:
        assert word in proc.stderr


def test_docker_runner_without_an_engine_says_how_to_start_one(cli):
    proc = cli(
        "run",
        "--image",
        "onnx-cpu",
        "--model",
        "resnet50",
        "--runner",
        "docker",
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "dockerd" in proc.stderr and "--runner local" in proc.stderr


def test_help_lists_the_commands_and_run_options(cli):
    top = cli("--help")
    assert top.returncode == 0 and "run" in top.stdout and "images" in top.stdout
    run = cli("run", "--help")
    for option in [
        "--engine",
        "--batch-size",
        "--samples",
        "--duration",
        "--warmup",
        "--weights",
        "--results",
        "--campaign",
        "--timeout",
        "--runner",
    ]:
        assert option in run.stdout


def test_images_list_works_without_docker(cli):
    proc = cli("images", "list", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 0
    assert "onnx-cpu" in proc.stdout and "onnxruntime" in proc.stdout
    assert "unknown" in proc.stdout
