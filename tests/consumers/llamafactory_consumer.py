"""LLaMA-Factory 0.9.5's dataset registry and converter on synthrank's JSONL exports (run in
the consumers venv).

Reads the export folder's ``dataset_info.json`` with ``get_dataset_list`` (as
``--dataset_dir DIR --dataset NAME`` does), loads each file with ``datasets`` and aligns it
with ``align_dataset``, LLaMA-Factory's converter to its ``_system``/``_prompt``/``_response``
layout. An example it cannot convert comes out with an empty prompt or response. Prints
JSON per dataset name: formatting, rows, rows converted, the first converted example.

    python llamafactory_consumer.py '{"dir": EXPORT_DIR, "names": [...]}'
"""

import json
import sys
from types import SimpleNamespace

import datasets

from submodules import import_submodule


def main() -> None:
    args = json.loads(sys.argv[1])
    parser = import_submodule("llamafactory.data.parser")
    converter = import_submodule("llamafactory.data.converter")
    data_args = import_submodule("llamafactory.hparams.data_args").DataArguments(
        dataset_dir=args["dir"], overwrite_cache=True)
    training_args = SimpleNamespace(local_process_index=0)
    out = {}
    for attr in parser.get_dataset_list(args["names"], args["dir"]):
        raw = datasets.load_dataset("json", data_files=f"{args['dir']}/{attr.dataset_name}", split="train")
        aligned = converter.align_dataset(raw, attr, data_args, training_args)
        converted = [row for row in aligned if row["_prompt"] and row["_response"]]
        first = aligned[0]
        out[attr.dataset_name] = {"formatting": attr.formatting, "rows": len(raw), "converted": len(converted),
                                  "first": {key: first[key] for key in ("_system", "_prompt", "_response")}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
