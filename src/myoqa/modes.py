"""What a question may ask for: the retrieval modes and the most passages one answer holds.

Kept apart from `search/` so the CLI's parser names them without loading the search stages."""

MODES = ("hybrid", "bm25", "dense")
MAX_K = 100
