"""The views' door and voice, without the model: one list of modes and one limit, the backend
the settings name, the line `myoqa index` prints, the exit codes, and the user's programs
resolved in Settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from myoqa import cli, diagnostics, modes, search
from myoqa.backend import Built
from myoqa.config import Settings
from myoqa.engine import LocalBackend, backend_for
from myoqa.errors import ExitCode, MyoqaError, UsageError
from myoqa.info_view import built_line


def test_one_list_of_modes_and_one_limit_for_k() -> None:
    assert cli.MODES is search.MODES is modes.MODES
    assert search.MAX_K == modes.MAX_K
    with pytest.raises(UsageError):
        cli.build_parser().parse_args(["ask", "q", "-k", str(modes.MAX_K + 1)])


def test_the_settings_name_the_backend_behind_the_door(tmp_path: Path) -> None:
    local = Settings(tmp_path, tmp_path / "index", "m")
    assert isinstance(backend_for(local), LocalBackend)
    from myoqa.scale.milvus_engine import MilvusBackend

    assert isinstance(backend_for(replace(local, backend="milvus")), MilvusBackend)


def test_the_index_line_says_where_and_what_for_either_backend() -> None:
    local = Built("/i/build-1", 51, 163, 2, "2026-12-07T05:57:20Z", 13.288, 0)
    assert built_line(local) == ("index /i/build-1 holds 51 passages and 163 spans from 2 "
                                 "sources (built 2026-12-07T05:57:20Z in 13.288 s; 0 of 214 "
                                 "vectors reused)")
    milvus = Built("lib_1 in Milvus at x.db", 51, 163, 2, "t", 1.5)
    assert built_line(milvus) == ("index lib_1 in Milvus at x.db holds 51 passages and 163 "
                                  "spans from 2 sources (built t in 1.5 s)")


@pytest.mark.parametrize(("error", "code", "line"), [
    (MyoqaError("no index", "run `myoqa index`"), ExitCode.FAILURE,
     "myoqa: error: no index (run `myoqa index`)\n"),
    (UsageError("bad option"), ExitCode.USAGE, "myoqa: error: bad option\n"),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED, "myoqa: interrupted\n"),
    (PermissionError(13, "Permission denied", "/x\n"), ExitCode.FAILURE,
     "myoqa: error: Permission denied (/x\\n)\n"),
    (RuntimeError("boom"), ExitCode.FAILURE,
     ("myoqa: error: unexpected RuntimeError: boom (this is a bug; set MYOQA_DEBUG=1 to see "
      "where, and please report it)\n")),
])
def test_every_failure_is_one_line_and_its_exit_code(
        error: BaseException, code: ExitCode, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> int:
        raise error

    assert diagnostics.guarded(fail, debug=False) == code
    assert capsys.readouterr().err == line


def test_debug_lets_an_unexpected_error_through() -> None:
    def fail() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        diagnostics.guarded(fail, debug=True)


def test_notes_and_progress_show_control_characters_escaped(
        capsys: pytest.CaptureFixture[str]) -> None:
    diagnostics.note("cut\x1b[2J")
    diagnostics.say("building\nnow")
    assert capsys.readouterr().err == "myoqa: note: cut\\x1b[2J\nmyoqa: building\\nnow\n"


@pytest.mark.parametrize(("env", "viewer", "origin"), [
    ({"VISUAL": "code -w", "EDITOR": "vim", "PAGER": "less"}, "code -w", "$VISUAL"),
    ({"VISUAL": "  ", "EDITOR": "nano", "PAGER": "less"}, "nano", "$EDITOR"),
    ({"PAGER": "more"}, "more", "$PAGER"),
    ({}, "", "the default"),
])
def test_the_program_that_opens_a_passage_is_resolved_once_with_its_origin(
        env: dict[str, str], viewer: str, origin: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("VISUAL", "EDITOR", "PAGER", "TERM"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in {**env, "TERM": "dumb"}.items():
        monkeypatch.setenv(variable, value)
    settings = Settings.resolve(tmp_path, tmp_path / "index", late="off")
    assert (settings.viewer, settings.viewer_from, settings.term) == (viewer, origin, "dumb")
