"""Shared fixtures: the real model, FAISS and BM25 on the real seeds, built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from myoqa.config import PROJECT_ROOT, Settings
from myoqa.engine import open_searcher
from myoqa.search import Searcher

SEEDS = PROJECT_ROOT / "seeds"
FLUTTER = "000_0ea712277db854cc.txt"
PROSE = "001_f6f440b41de63d6e.txt"


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with the real seeds and an index built once for the whole session."""
    index_dir = tmp_path_factory.mktemp("seed-index")
    settings = Settings.resolve(sources=SEEDS, index_dir=index_dir)
    open_searcher(settings, notify=lambda _m: None)
    return settings


@pytest.fixture(scope="session")
def searcher(seed_settings: Settings) -> Searcher:
    """One Searcher over the seeds, its query encoder loaded, shared by all tests."""
    s = open_searcher(seed_settings, notify=lambda _m: None)
    s.load_encoder()
    return s


@pytest.fixture()
def source_copy(tmp_path: Path) -> Path:
    """A private copy of the seeds that a test may change."""
    target = tmp_path / "sources"
    shutil.copytree(SEEDS, target)
    for path in [target, *target.iterdir()]:
        path.chmod(path.stat().st_mode | 0o200)
    return target


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    """Run `python -m myoqa` in a fresh process, as a user would."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "myoqa", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"],
                                                  capture_output=True, check=False).returncode == 0:
        return ["unshare", "--user"]
    pytest.skip("running as root without user namespaces, so permissions cannot bite")


@pytest.fixture()
def read_only() -> Iterator[Callable[[Path], None]]:
    """Makes folders read-only for the test and writable again afterwards."""
    made: list[Path] = []

    def make(folder: Path) -> None:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
            made.append(path)

    yield make
    for path in made:
        path.chmod(0o755 if path.is_dir() else 0o644)
