"""Hugging Face hub ids: the snapshot in this host's Hugging Face cache, fetched there when the hub
answers. Containers never reach the hub (no network in batch mode): they get the snapshot mounted."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from suite.source_spec import SourceError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_cache() -> Path:
    """The hub cache folder, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = Path(os.environ.get("HF_HOME", Path("~/.cache/huggingface").expanduser())).expanduser()
    return home / "hub"


def cached_snapshot(hub_id: str, revision: str = "main") -> Path | None:
    """The cached snapshot folder of ``hub_id`` at ``revision`` (a branch, tag or commit), or None."""
    repo = hub_cache() / f"models--{hub_id.replace('/', '--')}"
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo / "snapshots" / commit
    if (snapshot / "config.json").is_file():
        return snapshot
    return None


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """None when the hub answers a TCP connection; else why it cannot be used from here."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return "HF_HUB_OFFLINE=1 is set"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{host}:{port} does not answer from this host ({exc.strerror or exc})"


def hub_snapshot(text: str) -> tuple[str, Path]:
    """(hub id, snapshot folder) for ``ORG/NAME[@REVISION]``: cached, or downloaded into the cache."""
    hub_id, _, revision = text.partition("@")
    if not HUB_ID.match(hub_id):
        raise SourceError(
            f"hf:{text} is not a hub id; name a hub model hf:ORG/NAME (e.g. hf:google/vit-base-patch16-224)"
        )
    found = cached_snapshot(hub_id, revision or "main")
    if found is not None:
        return hub_id, found
    why = hub_unreachable()
    if why is not None:
        raise SourceError(
            f"hf:{hub_id} is not in the Hugging Face cache ({hub_cache()}) and the hub cannot be reached ({why}): "
            f"download it where the hub answers (huggingface-cli download {hub_id}) and copy the cache here, "
            "or pass its save_pretrained folder"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise SourceError(
            f"hf:{hub_id} is not cached, and fetching it needs huggingface_hub here (pip install huggingface_hub)"
        ) from None
    try:
        # Config, tokenizer and torch weights only: not the TensorFlow or Flax copies some repositories carry.
        patterns = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin"]
        folder = snapshot_download(
            hub_id, revision=revision or None, cache_dir=str(hub_cache()), allow_patterns=patterns
        )
    except Exception as exc:  # noqa: BLE001 - a missing repository, a gated model, a broken connection
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"hf:{hub_id} could not be downloaded: {first}") from None
    return hub_id, Path(folder)
