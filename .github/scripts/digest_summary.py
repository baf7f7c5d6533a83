"""Markdown for the job summary: what was built for one image (id, registry digest, base, lock)."""

import json
import subprocess
import sys

name, listing = sys.argv[1], sys.argv[2]
row = next(r for r in json.load(open(listing)) if r["name"] == name)
pushed = subprocess.run(
    ["docker", "image", "inspect", "-f", "{{json .RepoDigests}}", f"joulebench/{name}:latest"],
    capture_output=True,
    text=True,
    check=False,
).stdout.strip()
print(f"### {name}\n")
print(f"- image id: `{row.get('image_id') or 'not built'}`")
print(f"- registry digests: `{pushed if pushed not in ('', '[]') else 'not pushed'}`")
print(f"- base: `{row.get('built_base_digest')}`")
print(f"- requirements.lock sha256: `{row.get('built_lock_sha256')}`")
