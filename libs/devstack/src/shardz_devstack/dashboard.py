"""The web dashboard's build (web/dashboard, Vite): run when its sources changed since the
last build, which leaves a hash of those sources next to the output."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
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


def _npm(folder: Path, *args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: run scripts/bootstrap.sh (it installs nodejs and npm)")
    done = subprocess.run(  # noqa: S603 (our own argv)
        [npm, *args], cwd=folder, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-6000:]
        raise RuntimeError(f"npm {' '.join(args)} failed in {folder}:\n{output}")


def npm_build(folder: Path) -> None:
    """`npm ci` when the lock file is newer than what is installed, then `npm run build`.
    Callers hold `build_lock(folder)`: several local stacks may start at once."""
    lockfile = folder / "package-lock.json"
    installed = folder / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lockfile.stat().st_mtime:
        _npm(folder, "ci", "--no-audit", "--no-fund")
    _npm(folder, "run", "build")


@contextlib.contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """One build of `folder` at a time across processes; the others wait for it."""
    with (folder / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build() -> Path | None:
    """The built dashboard (web/dashboard/dist), rebuilt first if its sources changed; None
    when there is no dashboard source at all."""
    if not (WEB / "package.json").exists():
        return None
    # several local stacks (dev, test slots) may start at once: one builds, the others wait
    with build_lock(WEB):
        wanted = sources_hash()
        if STAMP.is_file() and STAMP.read_text().strip() == wanted:
            return DIST
        print(f"building the dashboard in {WEB} ...", file=sys.stderr, flush=True)
        npm_build(WEB)
        STAMP.write_text(wanted + "\n")
    return DIST
