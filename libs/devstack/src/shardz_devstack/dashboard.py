"""The web dashboard's build (web/dashboard, Vite): run when its sources changed since the
last build, which leaves a hash of those sources next to the output."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from shardz_devstack.config import repo_root

WEB = repo_root() / "web" / "dashboard"
DIST = WEB / "dist"
STAMP = DIST / ".source-hash"
_INPUTS = ("index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json")
_TREES = ("src", "public")


def sources_hash(root: Path = WEB) -> str:
    digest = hashlib.sha256()
    files = [root / name for name in _INPUTS if (root / name).is_file()]
    for tree in _TREES:
        files += sorted(p for p in (root / tree).rglob("*") if p.is_file())
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: run scripts/bootstrap.sh (it installs nodejs and npm)")
    done = subprocess.run(  # noqa: S603 (our own argv)
        [npm, *args], cwd=WEB, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-6000:]
        raise RuntimeError(f"npm {' '.join(args)} failed in {WEB}:\n{output}")


def build() -> Path | None:
    """The built dashboard (web/dashboard/dist), rebuilt first if its sources changed; None
    when there is no dashboard source at all."""
    if not (WEB / "package.json").exists():
        return None
    # several local stacks (dev, test slots) may start at once: one builds, the others wait
    with (WEB / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = sources_hash()
        if STAMP.is_file() and STAMP.read_text().strip() == wanted:
            return DIST
        print(f"building the dashboard in {WEB} ...", file=sys.stderr, flush=True)
        lockfile = WEB / "package-lock.json"
        installed = WEB / "node_modules" / ".package-lock.json"
        if not installed.exists() or installed.stat().st_mtime < lockfile.stat().st_mtime:
            _npm("ci", "--no-audit", "--no-fund")
        _npm("run", "build")
        STAMP.write_text(wanted + "\n")
    return DIST
