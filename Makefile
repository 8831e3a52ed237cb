# secagg — two commands for a new user: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-slow demo bench bench-scale lint proto clean

setup: $(STAMP)

# torch first and pinned: 2.13.0 resolves to the CPU wheel; an unpinned torch pulls CUDA.
# The flower extra (flwr, no Ray) is installed too, so `make test` runs the Flower tests.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,flower]'
	$(BIN)/pip check
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

demo: setup
	$(BIN)/secagg demo --out demo-out

bench: setup
	$(BIN)/secagg bench --json bench-results/bench.json

bench-scale: setup
	$(BIN)/secagg bench --scale --json bench-results/scale.json

lint: setup
	$(BIN)/ruff check secagg server clients tests
	$(BIN)/ruff format --check secagg server clients
	$(BIN)/mypy secagg server clients
	$(BIN)/lint-imports

proto: setup
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. secagg/proto/core.proto
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. secagg/proto/service.proto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench-results
