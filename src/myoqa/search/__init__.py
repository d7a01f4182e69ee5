"""Search as stages: candidates → signals (BM25, dense) → fusion → result assembly → highlights.

`Searcher.search` is the one search API, over either backend (a `source.Library`: the local
index through `local.IndexLibrary`, or Milvus); the CLI, the chat and the evaluation are views
over it.
Each stage is its own module, and all but the model-backed signals are pure functions that tests
run without the model.
"""

from myoqa.modes import MAX_K, MODES
from myoqa.search.answer import Answer, Result
from myoqa.search.fusion import Convex, Fusion
from myoqa.search.params import LateInteraction, SearchParams
from myoqa.search.request import MAX_QUESTION_CHARS, MODEL_WORDS, check_request
from myoqa.search.searcher import Scores, Searcher

__all__ = ["MAX_K", "MAX_QUESTION_CHARS", "MODEL_WORDS", "MODES", "Answer", "Convex", "Fusion",
           "LateInteraction", "Result", "Scores", "SearchParams", "Searcher", "check_request"]
