"""Hostile files and inputs (issue 17, cases 1, 3, 8, 9 and 13): a file name that would read as a
command, links out of the sources folder, HTML nested past the parser's limit, inputs that never
end or expand without bound, and page breaks. Each test failed before its fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env, copy_index, write_sources
from myoqa.config import Settings

PWNED_SOURCE = "+!touch PWNED.txt"


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_open_of_a_source_named_like_a_vim_command_runs_nothing(
        seed_settings: Settings, tmp_path: Path) -> None:
    """`ask --open` with `--sources .` and a source named "+!touch PWNED.txt": real vim (in ex
    mode, reading no terminal) is given the file's absolute path after "--", so it edits that
    file instead of running `:!touch PWNED.txt`."""
    sources = write_sources(tmp_path / "src", {
        PWNED_SOURCE: "Diaphragmatic flutter is a rare myoclonus of the diaphragm."})
    env = {**os.environ, **cli_env(copy_index(seed_settings, tmp_path), Path(".")),
           "HF_HUB_OFFLINE": "1", "VISUAL": "", "EDITOR": "vim -es -N -u NONE -i NONE"}
    proc = subprocess.run([sys.executable, "-m", "myoqa", "ask", "--open", "1", "--mode", "bm25",
                           "diaphragmatic flutter"], cwd=sources, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, check=False,
                          start_new_session=True)  # no controlling terminal: vim reads /dev/null
    assert proc.returncode == 0, proc.stderr
    assert f"opening {PWNED_SOURCE} at line 1" in proc.stderr
    assert sorted(p.name for p in sources.iterdir()) == [PWNED_SOURCE]
