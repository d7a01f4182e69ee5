# Two commands a newcomer needs: `make chat` and `make test`. Both set up .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: chat ask index eval bench test test-fast lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,scale]'
	touch $(STAMP)

chat: $(STAMP)
	$(BIN)/myoqa chat

ask: $(STAMP)
	$(BIN)/myoqa ask "$(Q)"

index: $(STAMP)
	$(BIN)/myoqa index

eval: $(STAMP)
	$(BIN)/myoqa eval --mode all
	$(BIN)/myoqa eval --mode all --file eval/holdout.jsonl

bench: $(STAMP)
	$(BIN)/myoqa bench

test: $(STAMP)
	$(BIN)/python -m pytest -q

# All but the slow kinds (Milvus, Ray, MED, install, bench, kill/fault windows; markers in
# pyproject.toml): the real model on the real seeds still, in a few minutes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# ruff's rules, the layers contract in pyproject.toml (imports run one way), mypy strict on the core.
lint: $(STAMP)
	$(BIN)/ruff check src tests eval
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) index
