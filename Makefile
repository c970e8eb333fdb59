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

# With two MindSpore processes on two cores, each one's runtime threads spin on sched_yield
# while the other's workers wait for the core; preloading a yield that sleeps hands it over
# (experiments/cpu_speed.md). `make test TEST_PRELOAD=` runs without it.
YIELD_SLEEP  := $(VENV)/yield_sleep.so
TEST_PRELOAD ?= $(YIELD_SLEEP)

$(YIELD_SLEEP): ddpm/runtime/yield_sleep.c $(STAMP)
	$(CC) -O2 -shared -fPIC -o $@ $< || echo "no C compiler: the tests run without $@"

test: data $(TEST_PRELOAD)
	$(if $(wildcard $(TEST_PRELOAD)),LD_PRELOAD=$(abspath $(TEST_PRELOAD))) \
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
