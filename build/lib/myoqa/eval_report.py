"""The `myoqa eval` views: run an evaluation for each mode and print or save what it found."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from myoqa import beir, evaluation
from myoqa.config import PROJECT_ROOT, Settings
from myoqa.engine import open_searcher
from myoqa.errors import ExitCode, MyoqaError
from myoqa.search import SearchParams

DEFAULT_QUESTIONS = PROJECT_ROOT / "eval" / "questions.jsonl"
Progress = Callable[[str, int], Callable[[int], None]] | None


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("–" if value is None else str(value))


def table(summaries: dict[str, dict[str, Any]], groups: list[str], metrics: list[str]) -> str:
    """Rows of group/metric, one column per mode."""
    modes = list(summaries)
    lines = [f"{'':<34}" + "".join(f"{m:>10}" for m in modes)]
    for group in groups:
        if not any(group in summaries[m] for m in modes):
            continue
        lines.append(f"{group} ({summaries[modes[0]][group]['questions']} questions)")
        for metric in metrics:
            cells = [summaries[m].get(group, {}).get(metric) for m in modes]
            if all(c is None for c in cells):
                continue
            lines.append(f"  {metric:<32}" + "".join(f"{_fmt(c):>10}" for c in cells))
    return "\n".join(lines)


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place, so an
    interrupted or failed write never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise MyoqaError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def run_question_eval(settings: Settings, args: argparse.Namespace, modes: list[str],
                      progress: Progress) -> int:
    """Evaluate on a question set; print the table and the misses of the last mode."""
    questions = evaluation.load_questions(Path(args.file) if args.file else DEFAULT_QUESTIONS)
    searcher = open_searcher(settings, progress=progress)
    outcomes = {}
    for mode in modes:
        tick = progress(f"eval {mode}", len(questions)) if progress else None
        outcomes[mode] = evaluation.run(searcher, questions, mode, args.k, tick)
    summaries = {m: evaluation.summarize(o) for m, o in outcomes.items()}
    main_mode = "hybrid" if "hybrid" in modes else modes[0]
    if args.run_out:
        _write_lines(Path(args.run_out), evaluation.run_lines(outcomes[main_mode]))
    missed = evaluation.misses(outcomes[main_mode])
    if args.json:
        print(json.dumps({"summaries": summaries, "misses": {m: evaluation.misses(o)
                                                              for m, o in outcomes.items()}},
                         ensure_ascii=False, indent=1))
        return ExitCode.OK
    metrics = ["Hit@1", "Hit@3", "Hit@5", "MRR@10", "nDCG@10", "Full@5 (multi)",
               "out-of-scope abstained", "in-scope abstained"]
    main_groups = ["all", "tune", "check", "tune kind=paraphrase", "check kind=paraphrase",
                   "tune kind=multi", "check kind=multi"]
    print(table(summaries, main_groups, metrics))
    detail = [g for g in summaries[main_mode] if g.startswith(("kind=", "source="))]
    print()
    print(table(summaries, detail, ["Hit@1", "Hit@5", "MRR@10", "out-of-scope abstained"]))
    print(f"\nMissed at Hit@5 ({main_mode}): {len(missed)}")
    from myoqa.render import safe

    for m in missed:
        first = m["first"]
        where = f"{first['source']}:{first['start']}-{first['end']} {first['text']!r}" if first \
            else "nothing"
        print(f"  {m['id']} [{m['kind']}] {safe(m['question'])}\n      first: {safe(where)}")
    return ExitCode.OK


def run_beir_eval(settings: Settings, args: argparse.Namespace, modes: list[str],
                  progress: Progress) -> int:
    """Index a BEIR collection into its own folder and score every mode with ir_measures."""
    directory = Path(args.beir)
    if not directory.is_dir():
        raise MyoqaError(f"BEIR folder {directory} does not exist")
    sources = beir.load_corpus(directory)
    index_dir = (Path(args.index_dir) if args.index_dir
                 else settings.index_dir / "beir" / directory.resolve().name)
    searcher = open_searcher(replace(settings, index_dir=index_dir), progress=progress,
                             sources=sources, params=SearchParams(candidates=beir.CANDIDATES))
    results = {}
    for mode in modes:
        tick = progress(f"beir {mode}", len(beir.load_queries(directory))) if progress else None
        results[mode], run = beir.evaluate(searcher, directory, mode, tick)
        if args.trec_out and mode == ("hybrid" if "hybrid" in modes else modes[0]):
            write_atomically(Path(args.trec_out), beir.trec_lines(run, f"myoqa-{mode}"))
    if args.json:
        print(json.dumps({"collection": str(directory), "measures": results}, indent=1))
        return ExitCode.OK
    print(f"{directory} ({len(sources)} documents, index {index_dir})")
    print(f"{'':<12}" + "".join(f"{m:>10}" for m in modes))
    for measure in beir.MEASURES:
        print(f"{measure:<12}" + "".join(f"{results[m][measure]:>10.3f}" for m in modes))
    return ExitCode.OK
