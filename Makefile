# Two commands do everything on a fresh machine: `make report` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# guidellm, the load generator that drives the real engine, in a virtual environment of its own.
GL_VENV := .venv-guidellm
GL_STAMP := $(GL_VENV)/.installed

.PHONY: test test-fast demo lint format clean bench report screenshot

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[torch,test,serve]'
	touch $(STAMP)

$(GL_STAMP): constraints-guidellm.txt
	test -x $(GL_VENV)/bin/python || $(PY) -m venv $(GL_VENV)
	$(GL_VENV)/bin/python -m pip install -q -c constraints-guidellm.txt guidellm
	touch $(GL_STAMP)

test: $(STAMP) $(GL_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The tests not marked slow (no real timing, no real models): a quick check while working.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/memwall analyze bert-base --phase encode --seq-len 128 --convention paper
	$(BIN)/memwall analyze bert-large --phase encode --seq-len 128 --convention paper
	$(BIN)/memwall analyze gpt2 --phase generate --seq-len 0 --gen-len 128 --convention paper

# The main job: the whole analysis of this machine as one HTML file (build/report/index.html).
report: $(STAMP)
	$(BIN)/memwall report --out build/report

# docs/report.png: the report's first screen in headless Chromium (/usr/bin/chromium).
screenshot: $(STAMP)
	test -f build/report/index.html || $(MAKE) report
	$(BIN)/python -m memwall.report.screenshot build/report/index.html docs/report.png

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(GL_VENV) build dist .pytest_cache
