"""The `myoqa eval` views: run an evaluation for each mode and print or save what it found."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from myoqa import beir, evaluation
from myoqa.config import Settings, project_file
from myoqa.engine import check_index_folder, open_searcher
from myoqa.errors import ExitCode, json_text, printable
from myoqa.evaluation import Count, GroupSummary
from myoqa.output_files import check_output, kept_folders, write_output
from myoqa.render import safe
from myoqa.search import SearchParams

Progress = Callable[[str, int], Callable[[int], None]] | None
MAIN_GROUPS = ["all", "tune", "check", "tune kind=paraphrase", "check kind=paraphrase",
               "tune kind=multi", "check kind=multi"]
DETAIL_METRICS = ["hit_at_1", "hit_at_5", "mrr_at_10", "out_of_scope_abstained"]
DECIMALS = 6


def _fmt(value: float | Count | None) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("–" if value is None else str(value))


def _empty(value: float | Count | None) -> bool:
    return value is None or (isinstance(value, Count) and value.of == 0)


def table(summaries: dict[str, dict[str, GroupSummary]], groups: list[str],
          metrics: list[str]) -> list[str]:
    """Rows of group/metric, one column per mode; groups without questions and metrics that
    measure nothing in a group (a 0/0 count, a Hit@1 without in-scope questions) are left out."""
    modes = list(summaries)
    lines = [f"{'':<34}" + "".join(f"{m:>10}" for m in modes)]
    for group in groups:
        if group not in summaries[modes[0]]:
            continue
        count = summaries[modes[0]][group].questions
        lines.append(safe(f"{group} ({count} question{'' if count == 1 else 's'})"))
        for metric in metrics:
            cells = [getattr(summaries[m][group], metric) for m in modes]
            if all(_empty(c) for c in cells):
                continue
            label = evaluation.METRIC_LABELS[metric]
            lines.append(f"  {label:<32}" + "".join(f"{_fmt(c):>10}" for c in cells))
    return lines


def _rounded(value: Any) -> Any:
    return round(value, DECIMALS) if isinstance(value, float) else value


def group_json(group: GroupSummary) -> dict[str, Any]:
    """One group's metrics with their snake_case keys; counts as {"abstained": n, "of": m}."""
    return {key: _rounded(value) for key, value in asdict(group).items()}


def summary_json(summary: dict[str, GroupSummary]) -> dict[str, Any]:
    """The groups of `evaluation.summarize` nested under stable keys: all, tune, check,
    by_kind, by_source, tune_by_kind, check_by_kind (groups without questions left out)."""
    out: dict[str, Any] = {}
    for name, group in summary.items():
        if name in ("all", "tune", "check"):
            out[name] = group_json(group)
            continue
        prefix, _, value = name.partition("=")  # "kind", "source", "tune kind", "check kind"
        key = {"kind": "by_kind", "source": "by_source", "tune kind": "tune_by_kind",
               "check kind": "check_by_kind"}[prefix]
        out.setdefault(key, {})[value] = group_json(group)
    return out


def show(lines: list[str]) -> None:
    """Print the report; through a pager when it is longer than the terminal (never in a pipe)."""
    text = "\n".join(lines)
    if sys.stdout.isatty() and sys.stdin.isatty() and \
            len(lines) >= shutil.get_terminal_size().lines:
        import pydoc

        pydoc.pager(text)
    else:
        print(text)


def run_question_eval(settings: Settings, file: Path | None, modes: list[str], k: int,
                      as_json: bool, progress: Progress, run_out: Path | None = None) -> int:
    """Evaluate on a question set (`file`, default the checkout's eval/questions.jsonl) with
    `k` passages per question; print the table (or JSON) and the misses of the main mode, and
    write the ranked passages to `run_out`."""
    question_file = file or project_file("eval", "questions.jsonl", what="question set",
                                         option="--file F")
    kept = kept_folders(settings.sources, settings.index_dir)
    if run_out:
        check_output(run_out, inputs=[question_file], kept=kept)
    questions = evaluation.load_questions(question_file)
    searcher = open_searcher(settings, progress=progress)
    outcomes = {}
    for mode in modes:
        tick = progress(f"eval {mode}", len(questions)) if progress else None
        outcomes[mode] = evaluation.run(searcher, questions, mode, k, tick)
    summaries = {m: evaluation.summarize(o) for m, o in outcomes.items()}
    main_mode = "hybrid" if "hybrid" in modes else modes[0]
    if run_out:
        write_output(run_out, "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                      for row in evaluation.run_lines(outcomes[main_mode])),
                     inputs=[question_file], kept=kept)
    if as_json:
        print(json_text({
            "file": str(question_file), "k": k, "modes": modes, "model": settings.model,
            "index_dir": str(settings.index_dir), "questions": len(questions),
            "results": {m: {**summary_json(summaries[m]),
                            "misses": evaluation.misses(outcomes[m])} for m in modes}},
            indent=1))
        return ExitCode.OK
    lines = table(summaries, MAIN_GROUPS, list(evaluation.METRIC_LABELS))
    detail = [g for g in summaries[main_mode] if g.startswith(("kind=", "source="))]
    lines += ["", *table(summaries, detail, DETAIL_METRICS)]
    missed = evaluation.misses(outcomes[main_mode])
    lines.append(f"\nMissed at Hit@5 ({main_mode}): {len(missed)}")
    for m in missed:
        first = m["first"]
        where = (f"{printable(first['source'])}:{first['start']}-{first['end']} "
                 f"{safe(first['text'])!r}" if first else "nothing")
        lines.append(f"  {printable(m['id'])} [{m['kind']}] {safe(m['question'])}")
        lines.append(f"      first: {where}")
    show(lines)
    return ExitCode.OK


def beir_index_dir(settings: Settings, collection: Path) -> Path:
    """Where a BEIR collection's index lives: `beir/<folder name>` inside the index folder,
    whether that folder came from --index-dir, $MYOQA_INDEX_DIR or the default."""
    return settings.index_dir / "beir" / (collection.resolve().name or "root")


def run_beir_eval(settings: Settings, directory: Path, modes: list[str], as_json: bool,
                  progress: Progress, trec_out: Path | None = None) -> int:
    """Index the BEIR collection in `directory` into its own folder and score every mode with
    ir_measures (printed, or as JSON); the main mode's run goes to `trec_out`."""
    inputs = beir.input_files(directory)
    kept = kept_folders(index_dir=settings.index_dir)
    if trec_out:
        check_output(trec_out, inputs=inputs, kept=kept)
    check_index_folder(settings)  # the folder `ask` would accept, no other
    collection = beir.load(directory)
    index_dir = beir_index_dir(settings, directory)
    searcher = open_searcher(replace(settings, index_dir=index_dir), progress=progress,
                             sources=collection.documents,
                             params=SearchParams(candidates=beir.CANDIDATES))
    results = {}
    main_mode = "hybrid" if "hybrid" in modes else modes[0]
    for mode in modes:
        tick = progress(f"beir {mode}", len(collection.judged_queries)) if progress else None
        results[mode], run = beir.evaluate(searcher, collection, mode, tick)
        if trec_out and mode == main_mode:
            write_output(trec_out, beir.trec_lines(run, f"myoqa-{mode}"), inputs=inputs,
                         kept=kept)
    if as_json:
        print(json_text({
            "collection": str(directory), "documents": len(collection.documents),
            "queries": len(collection.judged_queries), "depth": beir.DEPTH, "modes": modes,
            "model": settings.model, "index_dir": str(index_dir),
            "measures": {m: {key: _rounded(v) for key, v in results[m].items()}
                         for m in modes}}, indent=1))
        return ExitCode.OK
    lines = [printable(f"{directory} ({len(collection.documents)} documents, "
                       f"{len(collection.judged_queries)} judged queries, index {index_dir})"),
             f"{'':<12}" + "".join(f"{m:>10}" for m in modes)]
    for name, key in beir.MEASURES.items():
        lines.append(f"{name:<12}" + "".join(f"{results[m][key]:>10.3f}" for m in modes))
    show(lines)
    return ExitCode.OK
