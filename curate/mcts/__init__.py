"""MCTS difficulty (ThinkLite-VL): how many search iterations a policy model needs to solve a problem.

- `search`: the tree search of one problem, as a generator of what it needs;
- `driver`: many problems' searches at once, their requests batched;
- `judges`: rule and LLM judges of a finished chain;
- `prompts`: the reference's step and judge prompts.
`curate.scoring.difficulty` stores the results; `curate.selectors.difficulty` keeps the hard ones.
"""

from curate.mcts.driver import Problem, ProblemResult, Sampling, SearchDriver
from curate.mcts.judges import JudgeItem, Judgement, LLMJudge, RuleJudge
from curate.mcts.search import Outcome, SearchConfig, TreeSearch

__all__ = ["JudgeItem", "Judgement", "LLMJudge", "Outcome", "Problem", "ProblemResult", "RuleJudge", "Sampling",
           "SearchConfig", "SearchDriver", "TreeSearch"]
