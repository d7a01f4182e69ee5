"""The `myoqa eval` views: run an evaluation for each mode and print or save what it found."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from myoqa import beir, evaluation
from myoqa.config import PROJECT_ROOT, Settings
from myoqa.engine import open_searcher
from myoqa.errors import ExitCode, MyoqaError
from myoqa.output_files import check_output, write_output
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


def run_question_eval(settings: Settings, args: argparse.Namespace, modes: list[str],
                      progress: Progress) -> int:
    """Evaluate on a question set; print the table and the misses of the last mode."""
    question_file = Path(args.file) if args.file else DEFAULT_QUESTIONS
    run_out = Path(args.run_out) if args.run_out else None
    if run_out:
        check_output(run_out, inputs=[question_file])
    questions = evaluation.load_questions(question_file)
    searcher = open_searcher(settings, progress=progress)
    outcomes = {}
    for mode in modes:
        tick = progress(f"eval {mode}", len(questions)) if progress else None
        outcomes[mode] = evaluation.run(searcher, questions, mode, args.k, tick)
    summaries = {m: evaluation.summarize(o) for m, o in outcomes.items()}
    main_mode = "hybrid" if "hybrid" in modes else modes[0]
    if run_out:
        write_output(run_out, "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                      for row in evaluation.run_lines(outcomes[main_mode])),
                     inputs=[question_file])
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
    trec_out = Path(args.trec_out) if args.trec_out else None
    inputs = beir.input_files(directory)
    if trec_out:
        check_output(trec_out, inputs=inputs)
    sources = beir.load_corpus(directory)
    index_dir = (Path(args.index_dir) if args.index_dir
                 else settings.index_dir / "beir" / directory.resolve().name)
    searcher = open_searcher(replace(settings, index_dir=index_dir), progress=progress,
                             sources=sources, params=SearchParams(candidates=beir.CANDIDATES))
    results = {}
    for mode in modes:
        tick = progress(f"beir {mode}", len(beir.load_queries(directory))) if progress else None
        results[mode], run = beir.evaluate(searcher, directory, mode, tick)
        if trec_out and mode == ("hybrid" if "hybrid" in modes else modes[0]):
            write_output(trec_out, beir.trec_lines(run, f"myoqa-{mode}"), inputs=inputs)
    if args.json:
        print(json.dumps({"collection": str(directory), "measures": results}, indent=1))
        return ExitCode.OK
    print(f"{directory} ({len(sources)} documents, index {index_dir})")
    print(f"{'':<12}" + "".join(f"{m:>10}" for m in modes))
    for measure in beir.MEASURES:
        print(f"{measure:<12}" + "".join(f"{results[m][measure]:>10.3f}" for m in modes))
    return ExitCode.OK
