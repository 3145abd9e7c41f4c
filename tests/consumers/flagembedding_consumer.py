"""FlagEmbedding 1.4's embedder training dataset and collator on synthrank's
``flagembedding`` export (run in the consumers venv).

Builds ``AbsEmbedderTrainDataset`` from the JSONL with ``train_group_size`` = 1 + the
negatives per row, and collates every row into one batch with ``AbsEmbedderCollator``, as
``FlagEmbedding.finetune.embedder`` does. Prints JSON: rows, the passages per row (each
positive drawn from ``pos``, negatives from ``neg``), the collated tensor shapes.

    python flagembedding_consumer.py '{"jsonl": ..., "tokenizer": DIR, "train_group_size": N, "cache": DIR}'
"""

import json
import sys

from transformers import AutoTokenizer

from submodules import import_submodule


def main() -> None:
    args = json.loads(sys.argv[1])
    arguments = import_submodule("FlagEmbedding.abc.finetune.embedder.AbsArguments")
    datasets = import_submodule("FlagEmbedding.abc.finetune.embedder.AbsDataset")
    data_args = arguments.AbsEmbedderDataArguments(train_data=[args["jsonl"]], train_group_size=args["train_group_size"],
                                                   query_max_len=32, passage_max_len=64, cache_path=args["cache"])
    tokenizer = AutoTokenizer.from_pretrained(args["tokenizer"])
    dataset = datasets.AbsEmbedderTrainDataset(args=data_args, tokenizer=tokenizer)
    items = [dataset[i] for i in range(len(dataset))]
    rows = [dataset.dataset[i] for i in range(len(dataset))]
    collator = datasets.AbsEmbedderCollator(tokenizer=tokenizer, query_max_len=32, passage_max_len=64)
    batch = collator(items)
    print(json.dumps({
        "rows": len(dataset),
        "groups": [{"passages": len(passages), "positive_from_pos": passages[0] in row["pos"],
                    "negatives_from_neg": all(p in row["neg"] for p in passages[1:])}
                   for (_, passages, _), row in zip(items, rows)],
        "query_shape": list(batch["queries"]["input_ids"].shape),
        "passage_shape": list(batch["passages"]["input_ids"].shape)}))


if __name__ == "__main__":
    main()
