"""Helpers shared by the golden generators in this folder (stdlib only)."""

import hashlib
import json
import subprocess
import sys


def run_json(cmd, who):
    """Run `cmd` and parse its stdout as JSON; on failure print its stderr tail and exit naming `who`."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        sys.exit(f"{who}: failed: {' '.join(cmd)}")
    return json.loads(p.stdout)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
