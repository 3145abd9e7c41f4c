"""Import one module of a package without running the ``__init__`` of the packages above it.

FlagEmbedding's, rank_llm's and LLaMA-Factory's package ``__init__`` files import their whole
stack (vLLM, gradio, model classes that transformers 5 no longer has); the modules the
export tests use need none of it. Runs in the consumers venv, not in synthrank's.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path


def import_submodule(dotted: str):
    """``package.sub.module``, its parent packages registered as bare namespaces."""
    parts = dotted.split(".")
    root = package_dir(parts[0])
    for depth in range(1, len(parts)):
        name = ".".join(parts[:depth])
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*parts[1:depth]))]
            sys.modules[name] = package
    return importlib.import_module(dotted)


def package_dir(name: str) -> Path:
    """The folder of a top-level package (imported or not)."""
    if name in sys.modules:
        return Path(sys.modules[name].__path__[0])
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])
