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

test: install consumers $(REVIEW_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rs

doctor: install
	HF_HUB_OFFLINE=1 .venv/bin/synthrank doctor

clean:
	rm -rf out .pytest_cache

# ---- consumers (issue 16) ------------------------------------------------------------------
# The trainers' own libraries, in a scratch venv that the export tests run consumer code in
# (tests/consumers.py finds .venv-consumers/bin/python, or $SYNTHRANK_CONSUMERS_PYTHON).
# torch first, the CPU build, so nothing pulls CUDA. verl, rank_llm, FlagEmbedding and
# LLaMA-Factory go in with --no-deps (their full trees want vLLM, gradio, ray[default]...;
# their pins also conflict), plus what the modules the tests use import. transformers is the
# range verl 0.9.1 and LLaMA-Factory 0.9.5 share; gguf lets transformers read the embedded
# SmolLM2 tokenizer (the tests' chat template) from its GGUF file.
CONSUMERS       := .venv-consumers
CONSUMERS_STAMP := $(CONSUMERS)/.installed
CONSUMERS_PIP   := $(CONSUMERS)/bin/pip

$(CONSUMERS_STAMP): Makefile
	rm -rf $(CONSUMERS)
	python3 -m venv $(CONSUMERS)
	$(CONSUMERS_PIP) install -q "torch==2.13.0"
	$(CONSUMERS_PIP) install -q "transformers>=5.5.3,<5.6" "datasets>=3,<=4.0.0" "peft>=0.18,<=0.18.1" \
	  "accelerate>=1.3,<=1.11" "tensordict>=0.8,<=0.10,!=0.9.0" "ray>=2.41" omegaconf pillow pyarrow \
	  pandas dacite ftfy sentencepiece protobuf gguf codetiming
	$(CONSUMERS_PIP) install -q --no-deps "verl==0.9.1" "rank-llm==0.25.7" "flagembedding==1.4.2" \
	  "llamafactory==0.9.5"
	touch $@

consumers: $(CONSUMERS_STAMP)
.PHONY: consumers
# ---- end consumers ---------------------------------------------------------------------------
