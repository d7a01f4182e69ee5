"""myoqa installed as a wheel, outside any checkout: bundled seeds, index in the user's cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FLUTTER, SEEDS
from myoqa.config import PACKAGE_SEEDS, PROJECT_ROOT

pytestmark = pytest.mark.install
NOT_PACKAGED = {".venv", ".git", "index", "eval", "tests", "build", ".pytest_cache", ".ruff_cache",
                ".hypothesis"}


def _not_packaged(folder: str, names: list[str]) -> set[str]:
    """The checkout's own top-level folders (never src/'s), caches and build leftovers."""
    top = set(names) & NOT_PACKAGED if Path(folder) == PROJECT_ROOT else set()
    return top | {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}


def test_bundled_seeds_are_the_seeds_byte_for_byte() -> None:
    assert sorted(p.name for p in PACKAGE_SEEDS.iterdir()) == sorted(p.name for p in SEEDS.iterdir())
    for path in SEEDS.iterdir():
        assert (PACKAGE_SEEDS / path.name).read_bytes() == path.read_bytes(), path.name


def test_the_questions_bench_times_are_the_eval_questions() -> None:
    shipped = (PACKAGE_SEEDS.parent / "bench" / "questions.txt").read_text(encoding="utf-8")
    asked = [json.loads(line)["question"] for line in
             (PROJECT_ROOT / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert shipped.splitlines() == asked


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, capture_output=True)


def test_a_wheel_installed_outside_the_checkout_answers_over_the_bundled_seeds(
        tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(PROJECT_ROOT, tree, ignore=_not_packaged)
    _pip("wheel", "--no-deps", "--no-build-isolation", str(tree), "-w", str(tmp_path / "wheel"))
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), *map(str, (tmp_path / "wheel").iterdir()))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYOQA_")}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_DATA_HOME=str(tmp_path / "data"), HF_HUB_OFFLINE="1")

    def myoqa(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "myoqa", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, check=False, timeout=600)

    installed = set(site.rglob("*"))
    asked = myoqa("ask", "what is diaphragmatic flutter?", "--json", "-k", "1")
    assert asked.returncode == 0, asked.stderr
    top = json.loads(asked.stdout)["passages"][0]
    assert top["source"] == FLUTTER
    assert top["text"] == (SEEDS / FLUTTER).read_text(encoding="utf-8")[top["start"]:top["end"]]
    bench = tmp_path / "bench"  # runs outside the checkout: its questions ship in the wheel
    benched = myoqa("bench", "--steps", "warm,med_build,scale", "--sizes", "2000",
                    "--out", str(bench), "--json")
    assert benched.returncode == 0, benched.stderr
    results = json.loads(benched.stdout)
    assert results["warm"]["queries"] > 0 and results["med_build"] is None
    assert [p["passages"] for p in results["scale"]] == [2000]
    assert json.loads((bench / "latest.json").read_text(encoding="utf-8")) == results
    status = json.loads(myoqa("status", "--json").stdout)
    assert status["state"] == "current"
    assert status["sources"] == str(site / "myoqa" / "seeds")
    assert status["sources_from"] == "the seed texts bundled with myoqa"
    assert status["index_from"] == "the user's cache folder"
    assert Path(status["index_dir"]).is_relative_to(tmp_path / "cache" / "myoqa")
    written = {p for p in set(site.rglob("*")) - installed if "__pycache__" not in p.parts}
    assert written == set() and list(elsewhere.iterdir()) == []
