# The README's two commands: `make demo` and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed

# llama.cpp is compiled portable by default: AVX2/FMA/F16C, no -march=native, no AVX-512 and
# no AMX. A native build on an Intel CPU with AMX segfaults in ggml's AMX matrix multiply
# (llama.cpp issue 20824). `make install LLAMA_BUILD=native` opts into a native build.
LLAMA_VERSION := 0.3.36
LLAMA_BUILD   ?= portable
ifeq ($(LLAMA_BUILD),native)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON
else
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
endif
LLAMA_STAMP := .venv/.llama-$(LLAMA_VERSION)-$(LLAMA_BUILD)

.PHONY: demo test install clean doctor

# Label Studio, for `synthrank review` and its tests, in a venv of its own: it pins Django and
# friends that must not meet the pipeline's dependencies. synthrank talks to it over HTTP only.
LABEL_STUDIO_VERSION := 1.23.2
REVIEW_STAMP := .venv-review/.installed

$(PY):
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip wheel setuptools

# Compiled from source with pip's cache off: a cached wheel built with other flags (a native
# one, say) must never be reused. The check afterwards refuses a build with AMX code paths.
$(LLAMA_STAMP): | $(PY)
	rm -f .venv/.llama-*
	$(PIP) install -q numpy typing-extensions diskcache jinja2
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q --no-cache-dir --force-reinstall \
	  --no-deps --no-binary llama-cpp-python "llama-cpp-python==$(LLAMA_VERSION)"
	$(PY) generators/teachers/llama_build.py --expect $(LLAMA_BUILD)
	touch $(LLAMA_STAMP)

# torch first, pinned to the CPU build, so sentence-transformers does not pull a CUDA build.
$(STAMP): pyproject.toml $(LLAMA_STAMP) | $(PY)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(REVIEW_STAMP):
	python3 -m venv .venv-review
	.venv-review/bin/pip install -q "label-studio==$(LABEL_STUDIO_VERSION)"
	touch $(REVIEW_STAMP)

# A second `make demo` reuses every stored teacher answer and publishes the next version.
demo: install
	HF_HUB_OFFLINE=1 .venv/bin/synthrank build examples/demo.yaml

test: install $(REVIEW_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rs

doctor: install
	HF_HUB_OFFLINE=1 .venv/bin/synthrank doctor

clean:
	rm -rf out .pytest_cache
