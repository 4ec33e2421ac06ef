# The commands a user types. `make train` and `make test` set up what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-full lint format tensorboard bench data clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: pip takes the local CPU wheel instead of a multi-GB CUDA build
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) -m lstm_sentiment.train $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-full: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir $(or $(LOGDIR),logs) --bind_all

bench: $(STAMP)
	$(PY) -m benchmarks.run $(ARGS)

data: $(STAMP)
	$(PY) -m lstm_sentiment.data.download $(ARGS)

clean:
	rm -rf logs .cache .pytest_cache .ruff_cache
