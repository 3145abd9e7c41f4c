"""rank_llm 0.25's RankZephyr prompt for given queries and passages (run in the consumers venv).

Renders each list with rank_llm's own ``rank_zephyr_template.yaml`` through its
``SingleTurnListwiseInferenceHandler``, with the passage budget ``RankListwiseOSLLM`` passes
for a window (300 * 20 / n words), and parses each given answer with the handler's response
cleaner. Prints JSON: the messages and parsed answers, one per list.

    python rank_llm_consumer.py LISTS.json   # [{"query", "passages": [{"title", "text"}], "answer"}]
"""

import json
import sys

import yaml

from submodules import import_submodule, package_dir


def main() -> None:
    data = import_submodule("rank_llm.data")
    handlers = import_submodule("rank_llm.rerank.listwise.singleturn_listwise_inference_handler")
    template_path = package_dir("rank_llm") / "rerank" / "prompt_templates" / "rank_zephyr_template.yaml"
    handler = handlers.SingleTurnListwiseInferenceHandler(yaml.safe_load(template_path.read_text()))
    out = []
    for item in json.loads(open(sys.argv[1], encoding="utf-8").read()):
        candidates = [data.Candidate(docid=str(i), score=0.0, doc=passage)
                      for i, passage in enumerate(item["passages"])]
        result = data.Result(query=data.Query(text=item["query"], qid="q"), candidates=candidates)
        n = len(candidates)
        messages = handler.generate_prompt(result, rank_start=0, rank_end=n, max_length=300 * (20 / n))
        out.append({"messages": messages, "answer": handler._clean_response(item["answer"])})
    print(json.dumps({"template": str(template_path), "lists": out}))


if __name__ == "__main__":
    main()
