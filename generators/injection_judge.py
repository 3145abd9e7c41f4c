"""A teacher's second opinion on passages the injection heuristics matched.

``InjectionJudge`` is the ``judge`` callable of ``filters.injection.InjectionFilter``: the
filter asks it only about texts that matched at least one rule. Every call goes through the
``TeacherRunner``, so it is recorded and never asked twice.
"""

from __future__ import annotations

import re

from generators.teachers import Call, Completion, Sampling, TeacherRunner, TeacherStats
from prompts import Prompt

_VERDICT = re.compile(r"<answer>\s*(yes|no)\s*</answer>", re.I)
YES_NO_GRAMMAR = 'root ::= "<think>" [^<]{1,600} "</think> <answer>" ("yes" | "no") "</answer>"\n'


def parse_judgment(completion: Completion) -> bool | None:
    """True for yes, False for no, None when the answer is missing or not in the shape."""
    if not completion.ok or completion.finish_reason == "length":
        return None
    match = _VERDICT.search(completion.content)
    return None if match is None else match.group(1).lower() == "yes"


class InjectionJudge:
    """Asks the teacher whether a passage addresses the model. An answer that cannot be read
    counts as yes: the heuristics already matched, so the passage stays flagged for a person."""

    def __init__(self, runner: TeacherRunner, prompt: Prompt, sampling: Sampling, constrained: bool = False):
        self.runner = runner
        self.prompt = prompt
        self.sampling = sampling
        self.grammar = YES_NO_GRAMMAR if constrained else None
        self.stats = TeacherStats()

    def __call__(self, text: str) -> bool:
        call = Call.of(self.runner.backend.model, self.prompt.render(passage=text), self.sampling, 0,
                       self.grammar)
        answers, stats = self.runner.run([call], "injection-judge")
        self.stats.add(stats)
        verdict = parse_judgment(answers[call.key])
        return True if verdict is None else verdict
