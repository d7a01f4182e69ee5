"""The `myoqa` command: a thin view over the search API (ask, index, info, eval, chat, bench)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TextIO

from myoqa import __version__
from myoqa.bench_steps import STEPS as BENCH_STEPS
from myoqa.diagnostics import guarded, note, progress_bar, say
from myoqa.errors import ExitCode, MyoqaError, UsageError
from myoqa.errors import json_text as _json
from myoqa.modes import MAX_K, MODES

if TYPE_CHECKING:
    from myoqa.config import Settings
    from myoqa.search import Answer, Searcher

BLAS_THREADS = "1"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, f"see `{self.prog} --help`")


MOST_REPEATS = 100
EVAL_K = 10


def _whole(value: str, most: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 1 <= number <= most:
        raise argparse.ArgumentTypeError(f"must be between 1 and {most}, got {number}")
    return number


def _k(value: str) -> int:
    """A number of passages (or a rank among them): at most the search's one limit, MAX_K."""
    return _whole(value, MAX_K)


def _repeats(value: str) -> int:
    return _whole(value, MOST_REPEATS)


def _place_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", metavar="DIR",
                        help="folder of sources: .txt, .md, .html, .pdf, .docx (default: "
                        "$MYOQA_SOURCES, else the project's seeds/, else the bundled seed texts)")
    parser.add_argument("--index-dir", metavar="DIR",
                        help="index folder (default: $MYOQA_INDEX_DIR, else the project's index/, "
                        "else one in the user's cache folder)")
    parser.add_argument("--model", metavar="NAME_OR_PATH",
                        help="embedding model (default: all-MiniLM-L6-v2, or $MYOQA_MODEL)")
    parser.add_argument("--follow-links", action="store_true", default=None,
                        help="read links that lead out of the sources folder (default: named as "
                        "skipped, unless $MYOQA_FOLLOW_LINKS=1)")


def _backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("local", "milvus"),
                        help="where the index lives: local files (default) or a Milvus server "
                        "($MYOQA_BACKEND); milvus needs the myoqa[scale] extra")
    parser.add_argument("--milvus-uri", metavar="URI",
                        help="Milvus server (http://host:19530) or a milvus-lite file "
                        "($MYOQA_MILVUS_URI)")
    parser.add_argument("--milvus-token", metavar="T", help="Milvus token ($MYOQA_MILVUS_TOKEN)")
    parser.add_argument("--collection", metavar="NAME",
                        help="Milvus alias of this library (default: named after the sources "
                        "folder and its path; $MYOQA_MILVUS_COLLECTION)")


def build_parser() -> Parser:
    """All commands and options."""
    parser = Parser(prog="myoqa", description="Answers questions about myoclonus with ranked, "
                    "highlighted passages quoted from the sources. With no command in a terminal, "
                    "opens the chat.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    ask = sub.add_parser("ask", help="answer one question and exit",
                         description="Print the passages that answer a question. The question "
                         "is read from stdin when it is '-', or when none is given and stdin is "
                         "not a terminal. Put -- before a question that starts with '-'.")
    ask.add_argument("question", nargs="*", help="the question (quote it or not; - for stdin)")
    ask.add_argument("--mode", choices=MODES, default="hybrid", help="retrieval mode")
    ask.add_argument("-k", type=_k, default=5, help=f"passages to show (1-{MAX_K})")
    ask.add_argument("--json", action="store_true", help="print one JSON object (see README)")
    ask.add_argument("--open", type=_k, metavar="RANK",
                     help="open the passage of this rank in $EDITOR (or $PAGER) at its line")
    _place_options(ask)
    _backend_options(ask)

    idx = sub.add_parser("index", help="build the index (progress on stderr)")
    idx.add_argument("--rebuild", action="store_true", help="rebuild even if it is current")
    idx.add_argument("--embed-with", choices=("local", "ray"), default="local",
                     help="embed in this process (default) or as a Ray job (myoqa[scale])")
    idx.add_argument("--ray-address", metavar="ADDR",
                     help="with --embed-with ray: the Ray cluster to join (default: start one "
                     "on this machine)")
    _place_options(idx)
    _backend_options(idx)

    for name in ("info", "status"):
        info = sub.add_parser(name, help="which sources and index are used, and the index's "
                              "state (current, stale, damaged)")
        info.add_argument("--json", action="store_true", help="print it as JSON (see README)")
        _place_options(info)
        _backend_options(info)

    ev = sub.add_parser("eval", help="measure retrieval quality on a question set or BEIR folder")
    ev.add_argument("--file", metavar="F", help="question set (default: eval/questions.jsonl)")
    ev.add_argument("--mode", choices=(*MODES, "all"), default="all", help="mode(s) to measure")
    ev.add_argument("-k", type=_k, help=f"passages per question (1-{MAX_K}, default {EVAL_K}; "
                    "not with --beir, which ranks a fixed depth)")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--run-out", metavar="FILE", help="write ranked passages, a JSON line each")
    ev.add_argument("--beir", metavar="DIR", help="evaluate on a BEIR collection instead")
    ev.add_argument("--trec-out", metavar="FILE", help="with --beir: write a TREC run file")
    _place_options(ev)
    _backend_options(ev)

    bench = sub.add_parser("bench", help="measure speed (see README); writes eval/bench/")
    bench.add_argument("--sizes", type=_sizes, default="10000,100000,1000000", metavar="N,N,…",
                       help="synthetic corpus sizes in passages ('' for none)")
    bench.add_argument("--repeats", type=_repeats, default=7, help="fresh-process repeats")
    bench.add_argument("--steps", type=_steps, default=",".join(BENCH_STEPS), metavar="STEP,…",
                       help=f"measurements to run (default all: {','.join(BENCH_STEPS)})")
    bench.add_argument("--out", metavar="DIR", help="results folder (default: eval/bench)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    _place_options(bench)

    chat = sub.add_parser("chat", help="open the terminal chat")
    chat.add_argument("--export-dir", metavar="DIR",
                      help="folder for saved transcripts and screenshots (default: "
                           "$MYOQA_EXPORT_DIR, else Documents/myoqa or the user data folder)")
    _place_options(chat)
    _backend_options(chat)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from myoqa.config import Settings

    return Settings.resolve(args.sources, args.index_dir, args.model,
                            export_dir=getattr(args, "export_dir", None),
                            backend=getattr(args, "backend", None),
                            milvus_uri=getattr(args, "milvus_uri", None),
                            milvus_token=getattr(args, "milvus_token", None),
                            milvus_collection=getattr(args, "collection", None),
                            embed_with=getattr(args, "embed_with", None),
                            ray_address=getattr(args, "ray_address", None),
                            follow_links=args.follow_links)


MAX_STDIN_QUESTION_BYTES = 64 * 1024


def _question(words: list[str]) -> str:
    """The question from the arguments, or from stdin when it is '-' or not given and stdin
    is not a terminal (at most MAX_STDIN_QUESTION_BYTES are read, so `yes | myoqa ask` ends)."""
    if words and words != ["-"]:
        return " ".join(words)
    if sys.stdin is None or (not words and sys.stdin.isatty()):
        raise UsageError("no question given",
                         "myoqa ask \"QUESTION\", or pipe one: echo QUESTION | myoqa ask")
    question = sys.stdin.buffer.read(MAX_STDIN_QUESTION_BYTES).decode("utf-8", errors="replace")
    if not question.strip():
        raise UsageError("no question on stdin", "pipe a question in, or give it as arguments")
    return question


def _styled(stream: TextIO, settings: Settings) -> bool:
    """Whether to print with styles: a terminal that shows them (not TERM=dumb)."""
    return stream.isatty() and settings.term != "dumb"


def cmd_ask(args: argparse.Namespace) -> int:
    """Print the ranked passages for one question, or open one of them (--open)."""
    from myoqa.engine import open_searcher
    from myoqa.search import check_request

    if args.open and args.json:
        raise UsageError("--open and --json do not go together", "use one of them")
    question = _question(args.question)
    k = max(args.k, args.open or 0)
    check_request(question, args.mode, k)
    settings = _settings(args)
    searcher = open_searcher(settings, progress=progress_bar(not args.json),
                             preload_late=args.mode == "hybrid", preload_query=args.mode != "bm25")
    answer = searcher.search(question, args.mode, k)
    _note_two_signals(settings)
    if args.json:
        print(_json(answer.to_json()))
        return ExitCode.OK
    for message in answer.notes:
        note(message)
    if args.open:
        return _open_result(searcher, answer, args.open, settings)
    from myoqa.render import print_answer

    print_answer(answer, question, _styled(sys.stdout, settings))
    return ExitCode.OK


MILVUS_TWO_SIGNALS = ("the Milvus backend answers with two signals, BM25 and dense: late "
                      "interaction is local only (README, Beyond one machine)")


def _note_two_signals(settings: Settings) -> None:
    """Say that the Milvus backend leaves late interaction out, so the difference from the
    local index is never silent (once the answer is given: an error stays one line)."""
    if settings.backend == "milvus" and settings.late is not None:
        note(MILVUS_TWO_SIGNALS)


def _open_result(searcher: Searcher, answer: Answer, rank: int, settings: Settings) -> int:
    """Open the passage of `rank` in the user's editor or pager (see editor.py)."""
    from myoqa.citation import Place
    from myoqa.editor import open_at, viewer
    from myoqa.formats import format_of

    if rank > len(answer.results):
        raise MyoqaError(f"there is no passage of rank {rank} (the answer has "
                         f"{len(answer.results)})", "pass a smaller RANK to --open")
    result = answer.results[rank - 1]
    fmt = format_of(result.source)
    text = searcher.index.texts[result.source]
    file = settings.sources / result.source if fmt is not None and fmt.extract is None else None
    open_at(file, result.source, text, Place(result.line, result.column, result.page), say,
            viewer(settings.viewer, settings.viewer_from))
    return ExitCode.OK


def cmd_index(args: argparse.Namespace) -> int:
    """Build (or rebuild) the index and say what it holds."""
    from myoqa.engine import backend_for
    from myoqa.info_view import built_line

    settings = _settings(args)
    built = backend_for(settings).build(args.rebuild, progress=progress_bar(True))
    print(built_line(built))
    _note_two_signals(settings)
    return ExitCode.OK


def cmd_info(args: argparse.Namespace) -> int:
    """Say which sources and index folder are used and why, and whether the index is current,
    stale (why) or damaged (what), with what it holds. Exit 1 when damaged or missing."""
    from myoqa.engine import backend_for
    from myoqa.info_view import show_status

    settings = _settings(args)
    return show_status(settings, backend_for(settings).status(), args.json)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the evaluation and print a table of metrics (one column per mode)."""
    if args.beir and (args.file or args.run_out):
        option = "--file" if args.file else "--run-out"
        raise UsageError(f"{option} is for question sets, not --beir",
                         "a BEIR run writes its ranking with --trec-out FILE")
    if args.trec_out and not args.beir:
        raise UsageError("--trec-out needs --beir DIR",
                         "a question-set run writes its ranking with --run-out FILE")
    if args.beir and args.k is not None:
        raise UsageError("-k is for question sets, not --beir",
                         "a BEIR run ranks a fixed depth and reports nDCG@10; leave out -k")
    from pathlib import Path

    from myoqa.eval_report import run_beir_eval, run_question_eval

    modes = list(MODES) if args.mode == "all" else [args.mode]
    settings = _settings(args)
    progress = progress_bar(not args.json)
    if args.beir:
        code = run_beir_eval(settings, Path(args.beir), modes, args.json, progress,
                             Path(args.trec_out) if args.trec_out else None)
    else:
        code = run_question_eval(settings, Path(args.file) if args.file else None, modes,
                                 EVAL_K if args.k is None else args.k, args.json, progress,
                                 Path(args.run_out) if args.run_out else None)
    _note_two_signals(settings)
    return code


def _sizes(value: str) -> list[int]:
    """--sizes: corpus sizes in passages, comma-separated, each within bench's limits."""
    from myoqa.bench import MAX_SIZE

    sizes = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, "
                                             f"got {part!r}") from None
        if not 1 <= size <= MAX_SIZE:
            raise argparse.ArgumentTypeError(f"sizes must be between 1 and {MAX_SIZE:,}, "
                                             f"got {size}")
        sizes.append(size)
    return sizes


def _steps(value: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in value.split(",") if s.strip())
    if not steps or any(s not in BENCH_STEPS for s in steps):
        raise argparse.ArgumentTypeError(f"choose from {','.join(BENCH_STEPS)}, not {value!r}")
    return steps


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the speed benchmark and print its table."""
    from pathlib import Path

    from myoqa import bench
    from myoqa.config import project_file
    from myoqa.output_files import kept_folders

    out = (Path(args.out) if args.out
           else project_file("eval", "bench", what="bench folder", option="--out DIR"))
    settings = _settings(args)
    bench.check_out_dir(out, kept_folders(settings.sources, settings.index_dir))
    results = bench.run(settings, out, args.sizes, args.repeats,
                        lambda m: print(m, file=sys.stderr), args.steps)
    print(json.dumps(results, indent=1) if args.json else bench.table(results))
    return ExitCode.OK


def cmd_chat(args: argparse.Namespace) -> int:
    """Open the Textual chat (only in a terminal)."""
    from myoqa.tui.terminal import require_terminal

    require_terminal()
    from myoqa.output_files import check_folder, kept_folders
    from myoqa.tui import places
    from myoqa.tui.app import run_chat

    settings = _settings(args)
    kept = kept_folders(settings.sources, settings.index_dir)
    chosen = settings.export_dir
    export_dir = places.export_dir(chosen, kept, settings.data_dir)
    if chosen:  # a folder the user named is refused at once; a default one when saving
        check_folder(export_dir, kept)
    return run_chat(settings, export_dir)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ask": cmd_ask, "index": cmd_index, "info": cmd_info, "status": cmd_info, "eval": cmd_eval,
    "bench": cmd_bench, "chat": cmd_chat,
}


ASK_SHORT_OPTIONS = ("-k", "-h")


def _parse(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv`; a usage error of `ask` caused by a question word that starts with '-'
    (`myoqa ask -myoclonus`) says to put -- before it."""
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        if argv[:1] != ["ask"]:
            raise
        for word in argv[1:]:
            if word == "--":
                break
            if (len(word) > 2 and word[0] == "-" and word[1] != "-"
                    and not word.startswith(ASK_SHORT_OPTIONS)):
                raise UsageError(exc.message, f"a question word that starts with '-' is read as an "
                                 f"option; put -- before the question, as in: myoqa ask -- {word}") from None
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command, turning every failure into one line and an exit code.

    User errors exit 1 (usage errors 2), Ctrl-C exits 130; anything unexpected is one line too,
    with its traceback only when MYOQA_DEBUG is set.
    """
    from myoqa.config import debug_wanted

    debug = debug_wanted()  # the one setting read before the others can fail
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # A question's matrix products are small: NumPy's BLAS threads only wait on each other
    # (late interaction's token products took 20× longer with them on a busy 2-core machine).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a character gets '?'
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    argv = sys.argv[1:] if argv is None else argv
    return int(guarded(lambda: _run(argv), debug))


def _run(argv: list[str]) -> int:
    """Parse `argv` and run its command (with none: the chat in a terminal, else the help)."""
    if sys.stdout is None:
        raise MyoqaError("standard output is closed",
                         "let myoqa write to a terminal, a file or a pipe")
    parser = build_parser()
    args = _parse(parser, argv)
    if args.command is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            args = parser.parse_args(["chat"])
        else:
            parser.print_help()
            return ExitCode.OK
    return int(COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
