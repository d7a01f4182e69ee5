"""The `myoqa` command as a user runs it: output, JSON schema, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FLUTTER, PROSE, cli_env, copy_index, run_cli
from myoqa import __version__
from myoqa.config import PROJECT_ROOT, Settings


def test_ask_json_follows_the_documented_schema(seed_settings: Settings) -> None:
    proc = run_cli("ask", "what is diaphragmatic flutter?", "--json", "-k", "3",
                   env=cli_env(seed_settings))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"question", "mode", "k", "abstained", "passages"} <= set(data)
    assert data["mode"] == "hybrid" and data["k"] == 3 and data["abstained"] is False
    assert len(data["passages"]) == 3
    texts = {p.name: p.read_text(encoding="utf-8") for p in seed_settings.sources.iterdir()}
    for rank, p in enumerate(data["passages"], 1):
        assert {"rank", "source", "start", "end", "line", "column", "page", "score", "text",
                "highlights"} <= set(p)
        assert p["page"] is None and p["column"] >= 1
        assert p["rank"] == rank
        assert p["text"] == texts[p["source"]][p["start"]:p["end"]]
        for h in p["highlights"]:
            assert set(h) == {"start", "end", "kind"} and h["kind"] in ("term", "evidence")
            assert 0 <= h["start"] < h["end"] <= len(p["text"])
    assert data["passages"][0]["source"] == FLUTTER


def test_ask_text_output_shows_rank_location_score_and_evidence(seed_settings: Settings) -> None:
    proc = run_cli("ask", "which", "drugs", "treat", "myoclonus?", "--mode", "bm25", "-k", "2",
                   env=cli_env(seed_settings))
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"1\. \S+:\d+:\d+ · chars \d+–\d+ · score \d", proc.stdout)
    assert "\n2. " in proc.stdout and "\n3. " not in proc.stdout
    assert "«" in proc.stdout and "»" in proc.stdout and "\n   terms: " in proc.stdout


def test_out_of_scope_question_says_so(seed_settings: Settings) -> None:
    proc = run_cli("ask", "how do I change my router password?", env=cli_env(seed_settings))
    assert proc.returncode == 0
    assert "do not seem to answer" in proc.stdout


@pytest.mark.parametrize("args", [["ask", ""], ["ask", "   "], ["ask", "x", "--mode", "fuzzy"],
                                  ["ask", "x", "-k", "0"], ["ask", "x", "-k", "-2"],
                                  ["ask", "x", "-k", "many"], ["ask", "x", "-k", "100000"],
                                  ["ask", "x", "--frobnicate"], ["ask"], ["frobnicate"],
                                  ["eval", "--mode", "fuzzy"]])
def test_usage_errors_are_one_line_and_exit_2(seed_settings: Settings, args: list[str]) -> None:
    proc = run_cli(*args, env=cli_env(seed_settings))
    assert proc.returncode == 2
    assert proc.stderr.startswith("myoqa: error: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_eval_beir_refuses_k_it_would_ignore(tmp_path: Path) -> None:
    proc = run_cli("eval", "--beir", str(tmp_path), "-k", "5",
                   env=cli_env(tmp_path / "no-index", tmp_path / "no-sources"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("myoqa: error: -k is for question sets, not --beir (a BEIR run ranks a "
                           "fixed depth and reports nDCG@10; leave out -k)\n")


def test_k_has_one_limit_the_search_max_k(tmp_path: Path) -> None:
    from myoqa.search import MAX_K
    from myoqa.tui.app import CHAT_MOST_K

    env = cli_env(tmp_path / "no-index", tmp_path / "no-sources")
    for command in (["ask", "x", "-k"], ["ask", "x", "--open"], ["eval", "-k"]):
        proc = run_cli(*command, str(MAX_K + 1), env=env)
        assert proc.returncode == 2 and f"between 1 and {MAX_K}, got {MAX_K + 1}" in proc.stderr
    for command in ("ask", "eval"):
        assert f"(1-{MAX_K}" in " ".join(run_cli(command, "--help").stdout.split())
    assert 1 <= CHAT_MOST_K <= MAX_K


def test_missing_sources_directory(seed_settings: Settings, tmp_path: Path) -> None:
    proc = run_cli("ask", "x", env=cli_env(seed_settings.index_dir, tmp_path / "nope"))
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and proc.stderr.count("\n") == 1


def test_empty_sources_directory(seed_settings: Settings, tmp_path: Path) -> None:
    proc = run_cli("ask", "x", env=cli_env(seed_settings.index_dir, tmp_path))
    assert proc.returncode == 1
    assert "no .txt, .md, .html, .pdf or .docx files" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("payload,words", [(b"caf\xe9 au lait", "not UTF-8"),
                                           (b"\x00\x01binary\x00", "binary")])
def test_unreadable_source_is_named(seed_settings: Settings, tmp_path: Path, payload: bytes,
                                    words: str) -> None:
    (tmp_path / "good.txt").write_text("Myoclonus is a brief twitch.", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(payload)
    proc = run_cli("ask", "x", env=cli_env(seed_settings.index_dir, tmp_path))
    assert proc.returncode == 1
    assert "bad.txt" in proc.stderr and words in proc.stderr
    assert "Traceback" not in proc.stderr


def test_info_describes_the_index(seed_settings: Settings) -> None:
    proc = run_cli("info", env=cli_env(seed_settings))
    assert proc.returncode == 0, proc.stderr
    assert "passages:" in proc.stdout and FLUTTER in proc.stdout and "sha256" in proc.stdout
    assert "state:     current" in proc.stdout and "($MYOQA_INDEX_DIR)" in proc.stdout
    status = json.loads(run_cli("status", "--json", env=cli_env(seed_settings)).stdout)
    assert status["state"] == "current" and status["stale"] is None and status["damaged"] is None
    assert status["index_dir"] == str(seed_settings.index_dir)
    assert status["manifest"]["format_version"] >= 1
    assert status["manifest"]["model"]["dimension"] == 384


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"myoqa {__version__}"


def test_info_without_an_index_says_what_to_run(tmp_path: Path) -> None:
    proc = run_cli("info", "--index-dir", str(tmp_path / "none"))
    assert proc.returncode == 1
    assert "no index" in proc.stderr and "myoqa index" in proc.stderr


def _modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, **(env or {})})
    return set(out.stdout.split())


def test_help_imports_no_torch() -> None:
    mods = _modules_after("import contextlib, io\nfrom myoqa.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    try:\n        main(['--help'])\n    except SystemExit:\n"
                          "        pass")
    assert "torch" not in mods and "sentence_transformers" not in mods
    assert "textual" not in mods


def test_ask_on_a_current_index_imports_no_torch(seed_settings: Settings) -> None:
    mods = _modules_after("import contextlib, io\nfrom myoqa.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    main(['ask', 'twitching when falling asleep', '--json'])",
                          env=cli_env(seed_settings))
    assert "torch" not in mods and "sentence_transformers" not in mods
    assert "textual" not in mods and "faiss" in mods


def test_ask_after_a_source_changed_rebuilds_without_torch(seed_settings: Settings,
                                                          source_copy: Path,
                                                          tmp_path: Path) -> None:
    with open(source_copy / PROSE, "a", encoding="utf-8") as fh:
        fh.write("\nStripe twitch syndrome is a made-up name.\n")
    env = cli_env(copy_index(seed_settings, tmp_path), source_copy)
    mods = _modules_after("import contextlib, io\nfrom myoqa.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    main(['ask', 'stripe twitch syndrome', '--json'])", env=env)
    assert "torch" not in mods and "sentence_transformers" not in mods
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert status["state"] == "current" and status["manifest"]["reused_vectors"] > 0


HEADLESS = sorted(
    ".".join(p.relative_to(PROJECT_ROOT / "src").with_suffix("").parts)
    for p in (PROJECT_ROOT / "src" / "myoqa").rglob("*.py")
    if "tui" not in p.parts and p.stem not in ("__main__", "bench"))


@pytest.mark.parametrize("module", HEADLESS)
def test_each_core_module_imports_no_textual_and_no_torch(module: str) -> None:
    mods = _modules_after(f"import {module.removesuffix('.__init__')}")
    assert "textual" not in mods and "torch" not in mods and "sentence_transformers" not in mods


def test_chat_folders_and_debug_are_resolved_once_in_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from myoqa.tui import places

    monkeypatch.setenv("MYOQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MYOQA_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("MYOQA_DEBUG", "1")
    settings = Settings.resolve(tmp_path, tmp_path / "index")
    assert (settings.data_dir, settings.data_dir_from) == (tmp_path / "data", "$MYOQA_DATA_DIR")
    assert (settings.export_dir, settings.export_dir_from) == (tmp_path / "exports",
                                                               "$MYOQA_EXPORT_DIR")
    assert settings.debug
    flagged = Settings.resolve(tmp_path, tmp_path / "index", export_dir=tmp_path / "mine")
    assert (flagged.export_dir, flagged.export_dir_from) == (tmp_path / "mine", "--export-dir")
    # the chat's places take the resolved values; they no longer read the environment
    assert places.data_dir(settings.data_dir) == tmp_path / "data"
    assert places.data_dir() != tmp_path / "data"
    assert places.export_dir(None, (), settings.data_dir) != tmp_path / "exports"
