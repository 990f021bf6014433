# Two commands matter: `make run` (demo exporter) and `make test` (every check).
# Both create the virtual environment and install what they need on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WHEELHOUSE := $(VENV)/wheelhouse
PYTEST_WORKERS ?= 4

.PHONY: run test lint typecheck unit services bench clean generate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

## The wheels of the project's dependencies and build backend: the image test replays the
## Dockerfile's pip steps from them, so the test suite itself never reaches an index.
$(WHEELHOUSE)/.stamp: $(STAMP)
	bash scripts/wheelhouse.sh $(WHEELHOUSE) $(BIN)/python
	touch $@

run: $(STAMP)
	$(BIN)/festivals-exporter run --config.file=exporter/demo.yaml --web.enable-lifecycle

## Installs and starts what the tests talk to (PostgreSQL, Redis, promtool, Chromium...).
services:
	bash scripts/ensure-services.sh

## Rewrites the mixin's generated files (alerts/, grafana/, deploy/kubernetes/base/mixin/,
## the tables in docs/) from exporter/mixin/; `make test` fails while they differ.
generate: $(STAMP)
	$(BIN)/festivals-exporter mixin --output .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(STAMP) $(WHEELHOUSE)/.stamp
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: services lint unit

## Installs the peers it compares against (blackbox, postgres and redis exporters, nginx).
bench: $(STAMP) services
	bash scripts/ensure-bench.sh
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
