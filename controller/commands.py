"""What the commands other than run and serve do: images, idle, system (cli.py parses their flags)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from controller import images
from controller.cli_args import check_output_file
from controller.errors import UserError
from controller.progress import Progress
from controller.requests import MeterSettings, check_meters, positive


def images_list(args: argparse.Namespace) -> int:
    manifests = images.load_manifests()
    try:
        from controller.runners.docker_runner import connect

        client = connect()
        note = None
    except UserError as exc:
        client, note = None, str(exc).split(".")[0]
    rows = images.describe(manifests, client)
    if args.json:
        print(images.to_json(rows))
        return 0
    width = max([len("NAME"), *(len(r["name"]) for r in rows)]) + 1
    print(f"{'NAME':<{width}} {'ENGINES':<32} {'PROVIDER':<9} {'GPU':<4} {'BUILT':<12} IMAGE ID")
    for r in rows:
        ident = (r["image_id"] or "-")[7:19] if r["image_id"] else "-"
        print(
            f"{r['name']:<{width}} {','.join(r['engines']):<32} {r['provider']:<9} "
            f"{'yes' if r['gpu'] else 'no':<4} {_built(r):<12} {ident}"
        )
    if note:
        print(f"(built status unknown: {note})")
    if any(not r["pinned"] for r in rows):
        print("unpinned: an image builds once its base is pinned (`images lock NAME` with a registry) or --unpinned")
    if any(r["lock"] != "current" for r in rows):
        print("no lock: an image builds once its requirements.lock is current (`images relock NAME`)")
    return 0


def _built(r: dict[str, object]) -> str:
    if r["unsupported"]:
        return "unsupported"
    if not r["pinned"] and not r["built"]:
        return "unpinned"
    if r["lock"] != "current" and not r["built"]:
        return "no lock"
    if r["built"] and r["stale"]:
        return "yes (stale)"
    return {None: "unknown", False: "no", True: "yes"}[r["built"]]  # type: ignore[index]


def images_lock(args: argparse.Namespace) -> int:
    from controller.runners.docker_runner import connect

    chosen = [images.get_manifest(name) for name in args.names]
    client = connect()
    for manifest in chosen:
        digest, replaced = images.lock_base(client, manifest)
        print(f"pinned {manifest.name}: {manifest.base}@{digest} (commit images/{manifest.name}/manifest.toml)")
        if replaced:
            print(f"  the tag has moved: the manifest had {replaced}; relock and rebuild {manifest.name}")
    return 0


def images_relock(args: argparse.Namespace) -> int:
    from controller.image_lock import relock

    if bool(args.names) == args.all:
        raise UserError("images relock: name the images (NAME ...) or pass --all, not both")
    manifests = images.load_manifests()
    chosen = list(manifests.values()) if args.all else [images.get_manifest(name) for name in args.names]
    for manifest in chosen:
        print(f"relocking {manifest.name} (Python {manifest.python}, {manifest.platform})", flush=True)
        path = relock(manifest, args.find_links, say=lambda text: print(text, flush=True))
        print(f"wrote {path.relative_to(images.REPO)}")
    return 0


def images_build(args: argparse.Namespace) -> int:
    from controller.runners.docker_runner import connect

    manifests = {name: images.get_manifest(name) for name in args.names}
    _check_build_inputs(args)
    for manifest in manifests.values():
        images.preflight(manifest, args.base_image, args.unpinned)  # its refusals need no Docker
    client = connect()
    if args.network is not None:
        _check_network(client, args.network)
    pip_config = images.host_pip_config() if args.pip_config == "host" else None
    progress = Progress()
    for name, manifest in manifests.items():
        with progress.step(f"building image {name}"):
            image_id = images.build_image(
                client,
                manifest,
                base_image=args.base_image,
                ca_bundle=args.ca_bundle,
                pip_config=pip_config,
                network=args.network,
                say=lambda text: print(text, flush=True),
                unpinned=args.unpinned,
            )
        print(f"built {manifest.tag} {image_id}")
    return 0


# A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], path components lowercase.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::\w[\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
)


def _check_build_inputs(args: argparse.Namespace) -> None:
    """--base-image and --ca-bundle, checked before Docker is asked anything."""
    if args.base_image is not None and not IMAGE_REF.match(args.base_image):
        raise UserError(
            f"--base-image {args.base_image!r} is not an image reference; give NAME[:TAG][@sha256:DIGEST], "
            "e.g. python:3.11-slim or localhost:5000/base@sha256:..."
        )
    ca = args.ca_bundle
    if ca is not None:
        if not ca.is_file():
            what = "is a folder" if ca.is_dir() else "no such file"
            raise UserError(f"--ca-bundle {ca}: {what}; give the PEM file of the CA your proxy or mirror uses")
        try:
            pem = ca.read_bytes()[: 2**20]
        except OSError as exc:
            raise UserError(f"--ca-bundle {ca}: cannot read it ({exc.strerror})") from None
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise UserError(f"--ca-bundle {ca} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give a PEM file")


def _check_network(client: Any, network: str) -> None:
    """--network names Docker's build modes or an existing network: a typo is said before the build starts."""
    if network in ("default", "host", "bridge", "none") or network.startswith("container:"):
        return
    if not any(n.name == network for n in client.networks.list(names=[network])):
        raise UserError(
            f"--network {network!r} is no network of this Docker engine; give host, bridge, none or one of "
            "`docker network ls`"
        )


def idle(args: argparse.Namespace) -> int:
    from controller.meters import measure_idle, save_baseline

    positive("--duration", args.duration)
    check_meters(MeterSettings(args.interval, wall_url=args.wall_url, wall_output=args.wall_output))
    if args.output is not None:
        check_output_file(args.output, "--output", "baseline.json")
    print(f"measuring idle power for {args.duration:g} s; keep this host idle", file=sys.stderr)
    with Progress().step("measuring idle power"):  # minutes: its clock shows, a line at least every 8 s
        baseline = measure_idle(
            args.duration, interval_s=args.interval, wall_url=args.wall_url, wall_output=args.wall_output
        )
    path = save_baseline(baseline, args.output)
    for domain, entry in sorted(baseline.domains.items()):
        shown = f"{entry['power_w']:.2f} W" if entry["available"] else f"unavailable: {entry['reason']}"
        windows = (entry.get("spread") or {}).get("windows") or []
        if windows:
            spread = ", ".join(f"{w['std_power_w']:.2g} W over {w['window_s']:g} s" for w in windows)
            shown += f" ± {entry['power_uncertainty_w']:.2g} W; it wanders by (1 sigma) {spread}"
        print(f"{domain:<6} {shown}")
    print(f"stored {path}")
    return 0


def system(args: argparse.Namespace) -> int:
    import json

    from controller.images import get_manifest
    from controller.meters import check_system

    checks = check_system()
    needs_gpu = any(get_manifest(name).gpu for name in args.image)
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        for c in checks:
            mark = {True: "ok ", False: "NO ", None: " ? "}[c.ok]
            print(f"[{mark}] {c.name:<32} {c.detail}")
            if c.hint and c.ok is False:
                print(f"      {'':<32} -> {c.hint}")
    required = ["rapl_zones", "rapl_permissions"] + (["nvml", "gpu_energy_counter"] if needs_gpu else [])
    missing = [c.name for c in checks if c.ok is False and c.name.split("[")[0] in required]
    if args.image and missing:
        print(f"not measurable for {', '.join(args.image)}: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0
