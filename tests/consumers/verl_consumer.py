"""verl 0.9 on synthrank's ``verl`` export (run in the consumers venv).

Loads the parquet with verl's ``RLHFDataset`` at each ``max_prompt_length`` asked (its
overlong-prompt filter is what drops rows), loads the shipped reward the way verl's trainer
does (``reward.custom_reward_function.path/name`` through ``get_custom_reward_fn``), and
scores responses to every row through verl's ``NaiveRewardManager.run_single`` on a
``DataProto``, as training does. Prints JSON: rows kept per length, the scores per row.

    python verl_consumer.py '{"parquet": ..., "reward": ..., "tokenizer": DIR,
                              "max_prompt_lengths": [...], "responses": {name: template}}'
"""

import json
import sys

import numpy as np
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from verl import DataProto
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.dataset.rl_dataset import RLHFDataset


def dataset(args: dict, tokenizer, max_prompt_length: int) -> RLHFDataset:
    config = OmegaConf.create({"max_prompt_length": max_prompt_length, "filter_overlong_prompts": True,
                               "filter_overlong_prompts_workers": 1, "cache_dir": args["cache_dir"]})
    return RLHFDataset(data_files=[args["parquet"]], tokenizer=tokenizer, config=config)


def reward_of(manager: NaiveRewardManager, tokenizer, item: dict, response: str) -> dict:
    """One response scored by verl's naive reward manager, as in a training step."""
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    tensors = {"responses": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids) + 4, dtype=torch.long)}
    non_tensors = {key: np.array([item[key]], dtype=object) for key in ("data_source", "reward_model", "extra_info")}
    data = DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)
    result = manager.loop.run_until_complete(manager.run_single(data))
    return {"score": result["reward_score"], **{k: v for k, v in result["reward_extra_info"].items()
                                                 if k not in ("num_turns", "rollout_reward_scores")}}


def main() -> None:
    args = json.loads(sys.argv[1])
    tokenizer = AutoTokenizer.from_pretrained(args["tokenizer"])
    kept = {str(n): len(dataset(args, tokenizer, n)) for n in args["max_prompt_lengths"]}
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": args["reward"], "name": "compute_score", "reward_kwargs": {}}}})
    manager = NaiveRewardManager(config=config, tokenizer=tokenizer, compute_score=get_custom_reward_fn(config))
    rows = dataset(args, tokenizer, max(args["max_prompt_lengths"]))
    scores = []
    for index in range(len(rows)):
        item = rows[index]
        truth = item["reward_model"]["ground_truth"]
        responses = {name: template.format(truth=truth, reversed=" > ".join(reversed(truth.split(" > "))),
                                           dropped=" > ".join(truth.split(" > ")[:-1]))
                     for name, template in args["responses"].items()}
        scores.append({"row_id": item["extra_info"]["row_id"],
                       **{name: reward_of(manager, tokenizer, item, text) for name, text in responses.items()}})
    print(json.dumps({"kept": kept, "scores": scores}))


if __name__ == "__main__":
    main()
