"""The `myoqa` command: a thin view over the search API (ask, index, info, eval, chat, bench)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from myoqa import __version__
from myoqa.errors import ExitCode, MyoqaError, UsageError, printable
from myoqa.errors import json_text as _json

if TYPE_CHECKING:
    from myoqa.config import Settings
    from myoqa.index.manifest import Manifest
    from myoqa.search import Answer, Searcher

MODES = ("hybrid", "bm25", "dense")
BLAS_THREADS = "1"
BENCH_STEPS = ("cold", "warm", "chat", "embedding", "updates", "med_build", "scale")


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
    """A number of passages (or a rank among them): at most the search's one limit, MAX_K
    (imported here, when a value is given, so `--help` does not load the search package)."""
    from myoqa.search.request import MAX_K

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
    ask.add_argument("-k", type=_k, default=5, help="passages to show (1-100)")
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
    ev.add_argument("-k", type=_k, help=f"passages per question (1-100, default {EVAL_K}; "
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


def _settings(args: argparse.Namespace) -> Any:
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


def _progress_factory(enabled: bool) -> Callable[[str, int], Callable[[int], None]] | None:
    """A rich progress bar on stderr, only when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    def factory(label: str, total: int) -> Callable[[int], None]:
        progress = Progress(console=Console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task(label, total=total)

        def tick(n: int) -> None:
            progress.advance(task, n)
            if progress.finished:
                progress.stop()

        return tick

    return factory


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


def _styled(stream: Any) -> bool:
    """Whether to print with styles: a terminal that shows them (not TERM=dumb)."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


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
    searcher = open_searcher(settings, progress=_progress_factory(not args.json),
                             preload_late=args.mode == "hybrid")
    answer = searcher.search(question, args.mode, k)
    _note_two_signals(settings)
    if args.json:
        print(_json(answer.to_json()))
        return ExitCode.OK
    for note in answer.notes:
        print(f"myoqa: note: {note}", file=sys.stderr)
    if args.open:
        return _open_result(searcher, answer, args.open, settings)
    from myoqa.render import plain_answer

    if not _styled(sys.stdout):
        sys.stdout.write(plain_answer(answer))
        sys.stdout.flush()
        return ExitCode.OK
    from rich.console import Console
    from rich.text import Text

    from myoqa.render import ABSTENTION, location, passage_text, safe

    console = Console(highlight=False, soft_wrap=False)
    if answer.abstained:
        console.print(Text(ABSTENTION, style="bold red"))
    for r in answer.results:
        head = Text(f"{r.rank}. ", style="bold")
        head.append(location(r), style="cyan")
        head.append(f"   score {r.score:.3f}", style="dim")
        console.print(head)
        console.print(passage_text(r))
        console.print()
    if not answer.results:
        console.print(Text(f"No passage matches {safe(question)!r}."))
    return ExitCode.OK


MILVUS_TWO_SIGNALS = ("the Milvus backend answers with two signals, BM25 and dense: late "
                      "interaction is local only (README, Beyond one machine)")


def _note_two_signals(settings: Settings) -> None:
    """Say that the Milvus backend leaves late interaction out, so the difference from the
    local index is never silent (once the answer is given: an error stays one line)."""
    if settings.backend == "milvus" and settings.late is not None:
        print(f"myoqa: note: {MILVUS_TWO_SIGNALS}", file=sys.stderr)


def _open_result(searcher: Searcher, answer: Answer, rank: int, settings: Settings) -> int:
    """Open the passage of `rank` in the user's editor or pager (see editor.py)."""
    from myoqa.citation import Place
    from myoqa.editor import open_at
    from myoqa.formats import format_of

    if rank > len(answer.results):
        raise MyoqaError(f"there is no passage of rank {rank} (the answer has "
                         f"{len(answer.results)})", "pass a smaller RANK to --open")
    result = answer.results[rank - 1]
    fmt = format_of(result.source)
    text = searcher.index.texts[result.source]
    file = settings.sources / result.source if fmt is not None and fmt.extract is None else None
    open_at(file, result.source, text, Place(result.line, result.column, result.page),
            lambda message: print(f"myoqa: {printable(message)}", file=sys.stderr))
    return ExitCode.OK


def cmd_index(args: argparse.Namespace) -> int:
    """Build (or rebuild) the index and say what it holds."""
    from myoqa.embedders import encoder_factory
    from myoqa.engine import stderr_notify
    from myoqa.index.opener import build_index, build_params, ready_index

    settings = _settings(args)
    if settings.embed_with == "ray" and settings.ray_address not in (None, "auto"):
        from myoqa.scale.ray_embed import check_reachable

        check_reachable(settings.ray_address)  # before the sources are read and chunked
    progress = _progress_factory(True)
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import index_milvus

        print(printable(index_milvus(settings, args.rebuild, progress)))
        _note_two_signals(settings)
        return ExitCode.OK
    if args.rebuild:
        built = build_index(settings, build_params(settings), stderr_notify, progress,
                            make_encoder=encoder_factory(settings))
    else:
        built = ready_index(settings, stderr_notify, progress=progress,
                            make_encoder=encoder_factory(settings))
    m = built.manifest
    print(printable(f"index {built.path} holds {m.counts.passages} passages and "
                    f"{m.counts.spans} spans from {m.counts.sources} sources (built "
                    f"{m.built_at} in {m.build_seconds} s; {m.reused_vectors} of "
                    f"{m.counts.passages + m.counts.spans} vectors reused)"))
    return ExitCode.OK


def cmd_info(args: argparse.Namespace) -> int:
    """Say which sources and index folder are used and why, and whether the index is current,
    stale (why) or damaged (what), with what it holds. Exit 1 when damaged or missing."""
    from myoqa.corpus import source_hashes
    from myoqa.index.health import State, check
    from myoqa.index.manifest import REBUILD_HINT
    from myoqa.index.opener import build_params

    settings = _settings(args)
    if settings.backend == "milvus":
        return _info_milvus(settings, args.json)
    try:
        hashes = source_hashes(settings.sources, settings.follow_links)
    except MyoqaError as exc:
        hashes, problem = {}, exc.message
    else:
        problem = None
    state = check(settings.index_dir, build_params(settings), hashes, full=True)
    if problem and state.state is State.CURRENT:
        state = replace(state, state=State.STALE, reason=problem)
    m = state.manifest
    if args.json:
        print(_json({"sources": str(settings.sources), "sources_from": settings.sources_from,
                     "follow_links": settings.follow_links,
                     "follow_links_from": settings.follow_links_from,
                     "index_dir": str(settings.index_dir), "index_from": settings.index_from,
                     "model": settings.model, "model_from": settings.model_from,
                     "late_model": settings.late.key if settings.late else None,
                     "late_from": settings.late_from,
                     "build": str(state.build) if state.build else None, **state.to_json(),
                     "manifest": m.to_json() if m else None}, indent=2))
    else:
        lines = [f"sources:   {settings.sources}  ({settings.sources_from})",
                 (f"links:     {'followed' if settings.follow_links else 'not followed'} out of "
                 f"the sources  ({settings.follow_links_from})"),
                 f"index:     {settings.index_dir}  ({settings.index_from})",
                 (f"late:      {'on, ' + settings.late.key if settings.late else 'off'}  "
                  f"({settings.late_from})"),
                 f"state:     {state.state.value}" + (f": {state.reason}" if state.reason else "")]
        if m:
            lines += [f"build:     {state.build}",
                      (f"built:     {m.built_at} in {m.build_seconds} s "
                      f"({m.reused_vectors} vectors reused)"),
                      (f"model:     {m.model.name} (dimension {m.model.dimension}, "
                      f"encoder {m.model.encoder})"),
                      f"passages:  {m.counts.passages}, spans: {m.counts.spans}",
                      *_made_of(m)]
        for line in lines:
            print(printable(line))
    if state.state is State.MISSING:
        raise MyoqaError(state.reason or "no index", "run `myoqa index`")
    if state.state is State.DAMAGED:
        raise MyoqaError(f"the index is damaged: {state.reason}", REBUILD_HINT)
    return ExitCode.OK


def _made_of(m: Manifest) -> list[str]:
    """The `info` lines of what a build was made from: settings, sources, skipped files (the
    same for a local build and a Milvus one)."""
    return [f"chunking:  {json.dumps(vars(m.chunking))}",
            f"analyzer:  {json.dumps(vars(m.analyzer))} rules {m.analyzer_rules}",
            *(f"source:    {src.name}  {src.chars} chars, {src.passages} passages, "
              f"sha256 {src.sha256[:16]}…" for src in m.sources),
            *(f"skipped:   {s.name}  ({s.reason})" for s in m.skipped)]


def _info_milvus(settings: Settings, as_json: bool) -> int:
    """`info`/`status` of a library kept in Milvus (see cmd_info)."""
    from myoqa.scale.milvus_engine import milvus_status

    status = milvus_status(settings)
    m = status.manifest
    if as_json:
        print(_json({"sources": str(settings.sources), "sources_from": settings.sources_from,
                     "model": settings.model, "model_from": settings.model_from,
                     **status.to_json()}, indent=2))
    else:
        lines = [f"sources:   {settings.sources}  ({settings.sources_from})",
                 f"index:     {status.collection} in Milvus at {status.uri}",
                 f"state:     {status.state}" + (f": {status.reason}" if status.reason else "")]
        if m:
            lines += [f"build:     {m.build} of {m.library}",
                      f"built:     {m.built_at} in {m.build_seconds} s",
                      f"model:     {m.model} (dimension {m.dimension}, {m.dense_index})",
                      f"passages:  {m.passages}, spans: {m.spans}, sources: {m.sources}",
                      *_made_of(m.manifest)]
        for line in lines:
            print(printable(line))
    if status.state in ("missing", "damaged"):
        raise MyoqaError(status.reason or "no index", "run `myoqa index --backend milvus`")
    return ExitCode.OK


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
    if args.k is None:
        args.k = EVAL_K
    from myoqa.eval_report import run_beir_eval, run_question_eval

    modes = list(MODES) if args.mode == "all" else [args.mode]
    settings = _settings(args)
    progress = _progress_factory(not args.json)
    if args.beir:
        code = run_beir_eval(settings, args, modes, progress)
    else:
        code = run_question_eval(settings, args, modes, progress)
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
    try:
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
    except MyoqaError as exc:
        print(f"myoqa: error: {exc}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("myoqa: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except OSError as exc:
        if debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(printable(f"myoqa: error: {exc.strerror or exc}{where}"), file=sys.stderr)
        return ExitCode.FAILURE
    except Exception as exc:  # the last guard against a traceback
        if debug:
            raise
        print(printable(f"myoqa: error: unexpected {type(exc).__name__}: {exc} (this is a bug; "
                        "set MYOQA_DEBUG=1 to see where, and please report it)"), file=sys.stderr)
        return ExitCode.FAILURE


if __name__ == "__main__":
    sys.exit(main())
