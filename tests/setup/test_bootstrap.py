"""`scripts/bootstrap.sh` on a machine without uv and without a usable pip (a fresh Debian has
none, or refuses it under PEP 668): it must still end with a working uv."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shardz_devstack.config import repo_root

REFUSAL = "error: externally-managed-environment (refused by the test: no system pip here)"


def _path_without_uv() -> str:
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "uv").exists())


def _refusing_pip(root: Path) -> tuple[Path, Path]:
    """`pip`/`pip3` commands and a `pip` module that fail the way Debian 12's do."""
    bin_dir, module_dir = root / "bin", root / "pythonpath" / "pip"
    bin_dir.mkdir(parents=True)
    module_dir.mkdir(parents=True)
    for name in ("pip", "pip3", "pip3.11"):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho '{REFUSAL}' >&2\nexit 1\n")
        script.chmod(0o755)
    for name in ("__init__.py", "__main__.py"):
        (module_dir / name).write_text(f"raise SystemExit({REFUSAL!r})\n")
    return bin_dir, module_dir.parent


def test_bootstrap_installs_uv_without_pip_or_uv(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    pip_bin, pythonpath = _refusing_pip(tmp_path / "nopip")
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{pip_bin}{os.pathsep}{_path_without_uv()}",
        "PYTHONPATH": str(pythonpath),
        # caches stay where they are, so the test downloads nothing it already has
        "XDG_CACHE_HOME": str(Path.home() / ".cache"),
        "UV_CACHE_DIR": subprocess.run(
            ["uv", "cache", "dir"], capture_output=True, text=True, check=True
        ).stdout.strip(),
    }
    env.pop("VIRTUAL_ENV", None)
    # the premise: neither uv nor pip can be had from this environment
    assert shutil.which("uv", path=env["PATH"]) is None
    probe = subprocess.run(
        ["python3", "-m", "pip", "--version"], env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "externally-managed" in probe.stderr

    done = subprocess.run(
        ["bash", "scripts/bootstrap.sh"],
        cwd=repo_root(),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing uv" in done.stderr
    uv = home / ".local" / "share" / "shardz" / "bin" / "uv"
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("uv ")
    # and the Makefile finds it there without anything else on PATH
    found = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(repo_root()), "-f", "Makefile",
         "--eval", "print-uv: ; @command -v uv", "print-uv"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert found.stdout.strip() == str(uv), found.stderr
