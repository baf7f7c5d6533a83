#!/usr/bin/env bash
# Make a Linux VM a joulebench node: Docker, the NVIDIA container toolkit (when the VM has an NVIDIA
# GPU), joulebench and Ray in a virtual environment, the runtime images, an idle baseline; or, with
# JOULEBENCH_ROLE=head, the cluster's head: joulebench and Ray only (it measures nothing, so no
# Docker images, no idle baseline). Idempotent: what is there is kept. Run it as the user that will
# run `ray start` (it uses sudo for system packages):
#
#   JOULEBENCH_IMAGES="torch-cuda onnx-cuda" bash tools/cluster/setup-node.sh [CHECKOUT]
#   ~/joulebench-venv/bin/ray start --address HEAD:6379 --resources '{"joulebench_host": 1}'
#
# Settings (environment):
#   JOULEBENCH_ROLE        node (default: a measuring machine) or head (joulebench and Ray only)
#   JOULEBENCH_VENV        the virtual environment (default ~/joulebench-venv): Debian 12 and
#                          Ubuntu 24.04 refuse pip installs into the system Python (PEP 668)
#   JOULEBENCH_IMAGES      images to have on this node (default: none; `campaign run --build-images`
#                          can build them later, one node at a time while it measures nothing)
#   JOULEBENCH_REGISTRY    pull the images from REGISTRY/NAME:latest (pushed there from one build)
#                          instead of building them here; they are tagged as this checkout's
#   JOULEBENCH_RAY_VERSION the Ray version of the cluster (the controller's must be the same)
#   JOULEBENCH_IDLE_S      measure this node's idle baseline for so many seconds (default: skip)
set -euo pipefail
CHECKOUT=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
cd "$CHECKOUT"
export DEBIAN_FRONTEND=noninteractive
ROLE=${JOULEBENCH_ROLE:-node}
VENV=${JOULEBENCH_VENV:-$HOME/joulebench-venv}
say() { printf '\n=== %s\n' "$1"; }
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
case "$ROLE" in node|head) ;; *) echo "JOULEBENCH_ROLE=$ROLE: expected node or head"; exit 2 ;; esac

say "joulebench and Ray in $VENV"
python3 -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
  || { echo "joulebench needs Python 3.10 or later as python3"; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then  # Debian and Ubuntu ship venv apart
    rm -rf "$VENV"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "python3-venv" || $SUDO apt-get install -y -qq "python3.$(python3 -c 'import sys; print(sys.version_info[1])')-venv"
    python3 -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -e "$CHECKOUT[cluster]"
if [ -n "${JOULEBENCH_RAY_VERSION:-}" ]; then
  "$PY" -m pip install -q "ray[client]==$JOULEBENCH_RAY_VERSION"
fi
if [ "$ROLE" = head ]; then
  # `ray up` runs the autoscaler on the head, from this environment: it needs Ray's default extras and boto3.
  "$PY" -m pip install -q "ray[default,client]==$("$PY" -c 'import ray; print(ray.__version__)')" boto3
fi
"$PY" -c 'import ray, controller; print("ray", ray.__version__, "joulebench", controller.__file__)'

if [ "$ROLE" = head ]; then
  echo "head ready: $VENV/bin/ray start --head --port 6379 --num-cpus 0 --ray-client-server-port 10001"
  exit 0
fi

say "docker"
if ! command -v docker >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq docker.io
fi
$SUDO systemctl enable --now docker >/dev/null 2>&1 || true
if [ "$(id -u)" != 0 ] && ! id -nG | grep -qw docker; then
  $SUDO usermod -aG docker "$(id -un)"  # takes effect in the next login: ray start runs in one
fi

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  say "NVIDIA container toolkit ($(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs))"
  if ! command -v nvidia-ctk >/dev/null; then
    curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
      | $SUDO gpg --dearmor --yes -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
      | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#' \
      | $SUDO tee /etc/apt/sources.list.d/nvidia-container-toolkit.list >/dev/null
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq nvidia-container-toolkit
  fi
  $SUDO nvidia-ctk runtime configure --runtime=docker >/dev/null
  $SUDO systemctl restart docker
  # The energy counter is read as the user that runs the controller: no root needed for NVML.
fi

say "RAPL (CPU energy)"
if ls /sys/class/powercap/intel-rapl:*/energy_uj >/dev/null 2>&1; then
  # Patched kernels make energy_uj root-only; joulebench reads it as the Ray user. Until reboot.
  $SUDO chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj \
    2>/dev/null || true
else
  echo "no RAPL zones on this VM: CPU energy will be unavailable (recorded as such)"
fi

say "images"
run_docker() { if docker info >/dev/null 2>&1; then docker "$@"; else $SUDO docker "$@"; fi; }
for name in ${JOULEBENCH_IMAGES:-}; do
  if [ -n "${JOULEBENCH_REGISTRY:-}" ]; then
    tag=$("$PY" -c "from controller.images import get_manifest; print(get_manifest('$name').tag)")
    run_docker pull "$JOULEBENCH_REGISTRY/$name:latest"
    run_docker tag "$JOULEBENCH_REGISTRY/$name:latest" "$tag"
  else
    $SUDO -E "$PY" -m controller images build "$name" --pip-config host
  fi
done
$SUDO -E "$PY" -m controller images list || true

say "what this node can measure"
"$PY" -m controller system || true
if [ -n "${JOULEBENCH_IDLE_S:-}" ]; then
  say "idle baseline (${JOULEBENCH_IDLE_S} s; keep the node idle)"
  "$PY" -m controller idle --duration "$JOULEBENCH_IDLE_S"
fi
echo "ready: $VENV/bin/ray start --address HEAD:6379 --resources '{\"joulebench_host\": 1}'"
