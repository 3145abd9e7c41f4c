# The README's two commands: `make demo` and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed

.PHONY: demo test install clean

$(PY):
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip wheel setuptools

# torch first, pinned to the CPU build, so sentence-transformers does not pull a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# A second `make demo` reuses every stored teacher answer and publishes the next version.
demo: install
	HF_HUB_OFFLINE=1 .venv/bin/synthrank build examples/demo.yaml

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rs

clean:
	rm -rf out .pytest_cache
