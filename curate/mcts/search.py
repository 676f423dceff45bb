"""ThinkLite-VL's MCTS over reasoning steps for one problem (si0wang/ThinkLite-VL, `mcts_search`).

A node is the chain of steps so far (the root: none). One iteration:
- selection: from the root, while the node is not terminal and has children, go to the child with
  the highest `Q + c * sqrt(ln N_parent / N_child)` (an unvisited child scores +inf; ties go to the
  first child). Q is always 0, since rewards are 0 until the first success ends the search;
- expansion: a non-terminal node gets `expansions` children from one request with n = expansions,
  and the search moves to one of them uniformly at random (seeded);
- rollout: one step at a time from there until the chain is terminal (`max_steps` steps, or a step
  containing "Final Answer: "), at most `rollout_limit` steps; rollout steps are not added to the tree;
- judge the finished chain; correct: stop, the difficulty is this iteration's 0-based index;
  otherwise add a visit to every node from the rolled-out node up to the root.
After `max_iterations` iterations without a success the problem is unsolved.

The search is a generator that yields what it needs (`Step`: policy samples continuing a chain;
`Verdict`: a judgement of a finished chain) and is sent the answer, so that a driver can run many
problems' searches at once and batch their needs (see `curate.mcts.driver`). Verdicts are cached per
chain: a wrong finished chain met again (a terminal node selected twice) is not judged again.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Generator
from dataclasses import dataclass, field

from curate.mcts.prompts import FINAL_ANSWER


@dataclass(frozen=True)
class SearchConfig:
    """The reference's constants, as parameters (its defaults)."""

    max_iterations: int = 50      # --max_num_iterations
    expansions: int = 3           # top_k: children per expansion
    max_steps: int = 10           # a chain of this many steps is terminal
    rollout_limit: int = 10       # at most this many rollout steps per iteration
    c_puct: float = 1.0           # exploration constant of the selection rule
    seed: int = 0

    def __post_init__(self):
        if min(self.max_iterations, self.expansions, self.max_steps, self.rollout_limit) < 1:
            raise ValueError("max_iterations, expansions, max_steps and rollout_limit must be at least 1")


@dataclass(frozen=True)
class Step:
    """Needed: `n` sampled next steps after `steps` (answer: a list of n step texts)."""

    steps: tuple[str, ...]
    n: int
    seed: int


@dataclass(frozen=True)
class Verdict:
    """Needed: whether the finished chain `chain` (its steps joined) is correct (answer: a bool)."""

    chain: str


@dataclass(eq=False)
class Node:
    steps: tuple[str, ...]
    terminal: bool
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


@dataclass
class Outcome:
    solved: bool
    iteration: int | None          # 0-based index of the iteration that found a correct chain
    iterations_run: int
    chain: tuple[str, ...] | None  # the correct chain's steps
    verdicts: int                  # chains judged
    verdicts_reused: int           # judgements answered from the per-chain cache


def is_terminal(steps: tuple[str, ...], max_steps: int) -> bool:
    return len(steps) >= max_steps or (bool(steps) and FINAL_ANSWER in steps[-1])


def ucb(parent: Node, child: Node, c_puct: float) -> float:
    if child.visits == 0:
        return math.inf
    return child.value + c_puct * math.sqrt(math.log(parent.visits) / child.visits)


def select_child(node: Node, c_puct: float) -> Node:
    best, best_score = node.children[0], -math.inf
    for child in node.children:      # strictly greater: the first of equals wins, as in the reference
        score = ucb(node, child, c_puct)
        if score > best_score:
            best, best_score = child, score
    return best


def step_seed(seed: int, iteration: int, index: int) -> int:
    """The sampling seed of the `index`-th request of an iteration.

    The same for every problem, so that a backend batching requests by sampling parameters (the
    transformers one) can batch the problems' requests; distinct within a problem, so that two equal
    chains of one problem still get independent samples, and a re-run asks exactly the same requests
    (the response cache then replays a crashed run).
    """
    digest = hashlib.sha256(f"{seed}:{iteration}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class TreeSearch:
    """One problem's search: `run()` is the generator; `root` is the tree, kept for inspection."""

    def __init__(self, config: SearchConfig, rng: random.Random):
        self.config = config
        self.rng = rng
        self.root = Node(steps=(), terminal=False)
        self.verdict_cache: dict[str, bool] = {}

    def run(self) -> Generator[Step | Verdict, object, Outcome]:
        config = self.config
        reused = 0
        for iteration in range(config.max_iterations):
            requests = 0

            node = self.root
            while not node.terminal and node.children:
                node = select_child(node, config.c_puct)

            if not node.terminal:
                texts = yield Step(node.steps, config.expansions, step_seed(config.seed, iteration, requests))
                requests += 1
                node.children = [self._child(node, text) for text in texts]
                if node.children:
                    node = self.rng.choice(node.children)

            steps, terminal, rolled = node.steps, node.terminal, 0
            while not terminal and rolled < config.rollout_limit:
                [text] = yield Step(steps, 1, step_seed(config.seed, iteration, requests))
                requests += 1
                steps = steps + (text,)
                terminal = is_terminal(steps, config.max_steps)
                rolled += 1

            reward = 0.0
            if terminal:   # the reference judges only finished chains; an unfinished one scores 0
                chain = "".join(steps)
                if chain in self.verdict_cache:
                    reused += 1
                else:
                    self.verdict_cache[chain] = bool((yield Verdict(chain)))
                reward = 1.0 if self.verdict_cache[chain] else 0.0
            if reward == 1.0:
                return Outcome(True, iteration, iteration + 1, steps, len(self.verdict_cache), reused)

            cursor = node
            while cursor is not None:
                cursor.visits += 1
                cursor.value_sum += reward
                cursor = cursor.parent
        return Outcome(False, None, config.max_iterations, None, len(self.verdict_cache), reused)

    def _child(self, parent: Node, text: str) -> Node:
        steps = parent.steps + (text,)
        return Node(steps=steps, terminal=is_terminal(steps, self.config.max_steps), parent=parent)
