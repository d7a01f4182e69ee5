"""The README's speed table from a benchmark's results: each figure beside its target.

The targets live here, in TARGETS and SCALE_TARGETS, and nowhere else (issue 20's table; times
are for a quiet machine, so the ratios measured in the same run are the figures to compare).
"""

from __future__ import annotations

from typing import Any

TARGETS: dict[str, str] = {
    "ask_cold_late": "≤ 0.50 s (quiet machine)",
    "ask_cold_two_signals": "≤ 0.28 s (quiet machine)",
    "late_ratio": "≤ 1.25×",
    "import_share": "≤ 0.2×",
    "help": "≤ 0.3 s",
    "warm_late": "p50 ≤ 10 ms",
    "warm_two_signals": "p50 ≤ 3 ms",
    "chat_interactive": "≤ 0.30 s",
    "chat_first_answer": "≤ 0.45 s",
    "full_rebuild": "no slower than before",
    "append_then_ask": "≤ 3 s and ≤ 0.3×",
    "build_folder": "≤ 10 MB / —",
    "second_index": "no export, 0 MB",
    "med_build": "bounded",
    "dense_recall": "≥ 0.98",
}
"""Target of each figure of the seeds' steps, by row."""

SCALE_TARGETS: dict[int, tuple[str, str]] = {
    100_000: ("≤ 5 ms", "≤ 400 MB"),
    1_000_000: ("≤ 50 ms", "≤ 36 s, ≤ 3,000 MB"),
    10_000_000: ("≤ 300 ms", "—"),
}
"""Per synthetic size: the hybrid p50 target, and the build time / peak memory target."""

Row = tuple[str, str, str]


def _loads(step: dict[str, Any]) -> str:
    return " / ".join(f"{x:.1f}" for x in step.get("load_average", [])) or "—"


def _cold(c: dict[str, Any]) -> list[Row]:
    st_s = c["import_sentence_transformers_s"]
    signals = "three signals" if c.get("late") else "two signals"
    return [(f"cold `myoqa ask` (fresh process, {signals})", f"{c['ask_cold_s']:.2f} s",
             TARGETS["ask_cold_late"] if c.get("late") else TARGETS["ask_cold_two_signals"]),
            ("cold `myoqa ask` with `MYOQA_COLBERT=off` (two signals), same run",
             f"{c['ask_cold_two_signals_s']:.2f} s", TARGETS["ask_cold_two_signals"]),
            ("… late interaction on / off", f"{c['late_ratio']:.2f}×", TARGETS["late_ratio"]),
            (f"… as a share of `import sentence_transformers` ({st_s:.2f} s)",
             f"{c['ratio']:.2f}×", TARGETS["import_share"]),
            ("`myoqa --help`", f"{c['help_s']:.2f} s", TARGETS["help"]),
            ("… machine load (1 / 5 / 15 min) as these ended", _loads(c), "—")]


def _warm(w: dict[str, Any]) -> list[Row]:
    return [("warm hybrid query p50 / p95 (seeds)",
             f"{w['p50_ms']:.1f} / {w['p95_ms']:.1f} ms", TARGETS["warm_late"]),
            ("… with `MYOQA_COLBERT=off` (two signals), same run",
             f"{w['two_signals_p50_ms']:.1f} / {w['two_signals_p95_ms']:.1f} ms",
             TARGETS["warm_two_signals"]),
            ("… machine load (1 / 5 / 15 min) as these ended", _loads(w), "—")]


def _chat(ch: dict[str, Any]) -> list[Row]:
    return [("chat: launch → interactive input", f"{ch['interactive_s']:.2f} s",
             TARGETS["chat_interactive"]),
            ("chat: launch → first answer", f"{ch['first_answer_s']:.2f} s",
             TARGETS["chat_first_answer"]),
            ("chat: launch → hybrid answer (after the model loads)",
             f"{ch['hybrid_answer_s']:.2f} s", "—")]


def _embedding(e: dict[str, Any]) -> list[Row]:
    return [("embedding (build, sentence-transformers)",
             f"{e['sentence_transformers_passages_per_s']:.0f} passages/s", "—"),
            ("embedding (ONNX encoder)", f"{e['onnx_passages_per_s']:.0f} passages/s", "—")]


def _updates(u: dict[str, Any]) -> list[Row]:
    rows = [("first build of the seeds (exports the ONNX encoder once)",
             f"{u['first_build_s']:.2f} s", "—"),
            ("full rebuild (`myoqa index --rebuild`, every passage embedded)",
             f"{u['full_rebuild_s']:.2f} s", TARGETS["full_rebuild"]),
            ("one line appended to one source → next `myoqa ask` answers",
             f"{u['append_then_ask_s']:.2f} s ({u['ratio']:.2f}× a full rebuild)",
             TARGETS["append_then_ask"]),
            ("seeds build folder / shared encoder folder",
             f"{u['build_folder_mb']:.2f} MB / {u['encoder_mb']:.0f} MB", TARGETS["build_folder"])]
    if "second_index_s" in u:  # results of a bench before encoders were shared lack it
        rows.append(("a second index folder, same model: first build / encoder MB it adds",
                     (f"{u['second_index_s']:.2f} s "
                      f"({u['second_index_s'] / u['first_build_s']:.2f}× the first) / "
                      f"{u['second_index_encoder_mb']:.0f} MB"), TARGETS["second_index"]))
    return rows


def _scale(points: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for p in points:
        q_target, b_target = SCALE_TARGETS.get(p["passages"], ("—", "—"))
        rows.append((f"{p['passages']:,} passages: hybrid p50 / p95",
                     f"{p['p50_ms']:.1f} / {p['p95_ms']:.1f} ms", q_target))
        rows.append((f"{p['passages']:,} passages: build (no embedding), peak memory",
                     f"{p['build_s']:.1f} s, {p['peak_rss_mb']:.0f} MB", b_target))
        rows.append((f"{p['passages']:,} passages: dense recall@10 ({p['dense_index']})",
                     f"{p['dense_recall_at_10']:.3f}", TARGETS["dense_recall"]))
    return rows


def table(results: dict[str, Any]) -> str:
    """The README table: each figure of `results` (a bench run's JSON) beside its target."""
    rows: list[Row] = []
    for key, rows_of in (("cold", _cold), ("warm", _warm), ("chat", _chat),
                         ("embedding", _embedding), ("updates", _updates)):
        if results.get(key):
            rows += rows_of(results[key])
    m = results.get("med_build")
    if m:
        rows.append((f"building MED ({m['documents']:,} documents): time, peak memory",
                     f"{m['seconds']:.1f} s, {m['peak_rss_mb']:.0f} MB", TARGETS["med_build"]))
    rows += _scale(results.get("scale") or [])
    lines = ["| measure | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {t} |" for a, b, t in rows]
    return "\n".join(lines)
