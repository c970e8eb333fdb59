# `make run` and `make test` do all the set-up they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: setup data run test test-extras test-slow test-all bench lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,scale,plots]"
	touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST: Debian's package where apt is available (as root), else the checked download.
data: setup
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	  && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -q && apt-get install -y -q dataset-fashion-mnist) >/dev/null \
	  || echo "apt-get install dataset-fashion-mnist failed; trying the download"; fi
	$(PY) -m ddpm.data fashion_mnist

run: data
	$(PY) -m ddpm.run $(ARGS)

# Two worker processes: compiling graphs and starting tools leave a core idle otherwise.
TEST_WORKERS ?= 2

test: data
	$(PY) -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadgroup

# The tests of the optional extras (the benchmark's PyTorch twin), which `make test` skips
# without them; CI runs both.
test-extras: data
	$(PY) -m pip install --quiet -e ".[bench]"
	DDPM_REQUIRE_EXTRAS=1 $(PY) -m pytest -m "not slow" -q tests/test_bench.py

# One at a time: some of these time themselves or kill a run at random moments.
test-slow: data
	$(PY) -m pytest -m slow -q

test-all: test test-slow

bench: data
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m ddpm.bench $(ARGS)

lint: setup
	$(PY) -m ruff check ddpm tests
	$(PY) -m ruff format --check ddpm tests

format: setup
	$(PY) -m ruff format ddpm tests
	$(PY) -m ruff check --fix ddpm tests

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
