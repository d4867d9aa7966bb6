# Two entry points: `make demo` (set up, then the default job) and `make test` (set up, then the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TARGET ?= jetson-orin
FM     := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data browser demo demo-fast test docs bench readme examples clean

setup: $(VENV)/.installed data

# torch first, pinned: an unpinned torch resolved by pip would be a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,docs]"
	touch $@

data:
	@if [ -f $(FM) ] || [ -f "$${EDGEKD_DATA:-/nonexistent}/train-images-idx3-ubyte.gz" ] || \
	    [ -f "$$HOME/.cache/edgekd/fashion-mnist/train-images-idx3-ubyte.gz" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; \
	else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or put the four"; \
	    echo "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist into ~/.cache/edgekd/fashion-mnist"; \
	    exit 1; \
	fi

demo: setup
	$(BIN)/edgekd compress --target $(TARGET) --overwrite

demo-fast: setup
	$(BIN)/edgekd compress --target $(TARGET) --recipe fast --overwrite

# One pytest worker per usable core (nproc: the affinity, not the host's count), each pinned to its own
# (tests/conftest.py), whole files per worker.
test: setup browser
	$(BIN)/python -m pytest -q -n $$(nproc 2>/dev/null || echo 1) --dist loadfile

# The documentation site (MkDocs, Material theme) into site/; strict: a broken link or reference fails.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Headless Chromium renders report.html in the tests (Debian's package; installed when root).
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium >/dev/null; }; \
	else echo "note: no Chromium; the report.html rendering test will be skipped"; fi

# About 16 + 15 + 25 + 20 + 15 minutes on 2 cores; each script writes benchmarks/results/*.json.
bench: setup
	$(BIN)/python benchmarks/teacher_fashion_mnist.py
	$(BIN)/python benchmarks/distill_fashion_mnist.py
	$(BIN)/python benchmarks/prune_fashion_mnist.py
	$(BIN)/python benchmarks/factorize_fashion_mnist.py
	$(BIN)/python benchmarks/quantize_fashion_mnist.py
	python3 benchmarks/summarize.py

# Rewrite the rendered blocks in README.md and docs/ from benchmarks/results/*.json and examples/ (--check: compare only).
readme:
	$(BIN)/python benchmarks/render_readme.py

# Every examples/RECIPE/TARGET report again with the current code (6-10 minutes on 2 cores), then README and docs.
examples: setup
	$(BIN)/python benchmarks/regenerate_examples.py
	$(BIN)/python benchmarks/render_readme.py

clean:
	rm -rf $(VENV) runs site .pytest_cache
