"""The MCTS algorithm pinned with a scripted policy and judge (test doubles), traced by hand.

Real models are exercised in test_difficulty_real.py; here the policy's steps and the judge's
verdicts are scripted, so every visit count, expansion and judgement is known in advance.
"""

from __future__ import annotations

import random

import pytest

from curate.mcts.search import SearchConfig, Step, TreeSearch, Verdict, is_terminal, select_child, step_seed

FINAL = "### Final Answer: The answer is: $\\boxed{7}$. <end>"


class FirstChoice:
    """An rng whose uniform choice is always the first child: makes the hand traces below exact."""

    def choice(self, seq):
        return seq[0]


def drive(search: TreeSearch, policy, judge):
    """Run one search synchronously: `policy(step) -> texts`, `judge(chain) -> bool`; logs every need."""
    log = []
    generator = search.run()
    answer = None
    while True:
        try:
            need = generator.send(answer)
        except StopIteration as stop:
            return stop.value, log
        log.append(need)
        answer = policy(need) if isinstance(need, Step) else judge(need.chain)


def plain_steps(need: Step) -> list[str]:
    return [f"step {len(need.steps) + 1}.{k} (seed {need.seed}) <end>" for k in range(need.n)]


def node_visits(node) -> list:
    """The tree as nested [visits, [children...]]."""
    return [node.visits, [node_visits(child) for child in node.children]]


def test_visit_counts_expansions_and_verdict_cache_follow_the_reference():
    # Every step the same text, so every finished chain is the same string: judged once, then reused.
    search = TreeSearch(SearchConfig(max_iterations=5, expansions=2, max_steps=2), FirstChoice())
    outcome, log = drive(search, lambda need: ["s <end>"] * need.n, lambda chain: False)
    # iter 0: expand root -> A, B; go to A; roll out 1 step (depth 2 = terminal); judge; A=1 root=1
    # iter 1: B is unvisited (+inf) -> expand B -> B1, B2 (terminal); go to B1; cached verdict; B1=1 B=1 root=2
    # iter 2: A, B tie (sqrt(ln 2 / 1)) -> first, A; expand A -> A1, A2; A1=1 A=2 root=3
    # iter 3: A = sqrt(ln 3 / 2) < B = sqrt(ln 3 / 1) -> B; B2 unvisited -> B2 terminal; B2=1 B=2 root=4
    # iter 4: A, B tie at 2 -> A; A2 unvisited; A2=1 A=3 root=5
    assert node_visits(search.root) == [5, [[3, [[1, []], [1, []]]], [2, [[1, []], [1, []]]]]]
    steps = [need for need in log if isinstance(need, Step)]
    assert [(len(n.steps), n.n) for n in steps] == [(0, 2), (1, 1), (1, 2), (1, 2)]   # 3 expansions, 1 rollout
    assert [n.chain for n in log if isinstance(n, Verdict)] == ["s <end>s <end>"]
    assert (outcome.solved, outcome.iteration, outcome.iterations_run, outcome.chain) == (False, None, 5, None)
    assert (outcome.verdicts, outcome.verdicts_reused) == (1, 4)
    assert all(node.value == 0.0 for node in [search.root, *search.root.children])


def test_distinct_chains_are_each_judged_once_and_revisits_reuse_the_verdict():
    search = TreeSearch(SearchConfig(max_iterations=9, expansions=2, max_steps=2), FirstChoice())
    judged = []
    outcome, _ = drive(search, plain_steps, lambda chain: judged.append(chain) or False)
    # judged: the rollout from A (iter 0), then B1, A1, B2, A2 (iters 1-4, as traced above);
    # iters 5-8 revisit B1, A1, B2, A2 (least visited first, first of equals): verdicts reused
    assert len(judged) == len(set(judged)) == outcome.verdicts == 5
    assert outcome.verdicts_reused == 4
    a, b = search.root.children
    assert judged[1:] == ["".join(leaf.steps) for leaf in (b.children[0], a.children[0], b.children[1],
                                                           a.children[1])]
    assert search.root.visits == 9


def test_final_answer_step_is_terminal_and_is_not_rolled_out_or_expanded():
    def policy(need):
        return [FINAL] + ["think <end>"] * (need.n - 1) if not need.steps else ["more <end>"] * need.n

    search = TreeSearch(SearchConfig(max_iterations=3, expansions=3, max_steps=10), FirstChoice())
    outcome, log = drive(search, policy, lambda chain: False)
    first, second, _ = search.root.children
    assert first.terminal and not second.terminal and first.steps == (FINAL,)
    # iter 0: go to the terminal first child: no rollout, judged at once (a wrong final answer)
    assert isinstance(log[1], Verdict) and log[1].chain == FINAL
    # iter 1: `second` is unvisited -> expanded, rolled out to 10 steps (max_steps), judged
    assert [len(n.steps) for n in log[2:] if isinstance(n, Step)][:2] == [1, 2]
    assert max(len(n.steps) for n in log if isinstance(n, Step)) == 9
    assert first.children == [] and first.visits == 1
    assert not outcome.solved


def test_terminal_rules():
    assert not is_terminal((), 10)
    assert is_terminal(("a",) * 10, 10) and not is_terminal(("a",) * 9, 10)
    assert is_terminal(("### Final Answer: 3",), 10)
    assert not is_terminal(("Final Answer:3",), 10)          # the reference's marker has a trailing space
    assert not is_terminal(("Final Answer: 3", "next"), 10)  # only the last step counts


def test_rollout_limit_ends_unfinished_chains_without_a_judgement():
    search = TreeSearch(SearchConfig(max_iterations=2, expansions=1, max_steps=10, rollout_limit=2), FirstChoice())
    outcome, log = drive(search, plain_steps, lambda chain: pytest.fail("an unfinished chain was judged"))
    assert [len(n.steps) for n in log] == [0, 1, 2, 1, 2, 3]   # expand, 2 rollout steps; twice
    assert not outcome.solved and search.root.visits == 2 and outcome.verdicts == 0


def test_stops_at_first_success_with_a_zero_based_iteration_index():
    target = step_seed(0, 2, 1)            # iteration 2's first rollout step writes the right answer

    def policy(need):
        if need.seed == target:
            return [FINAL]
        return ["### Final Answer: The answer is: $\\boxed{8}$. <end>" if len(need.steps) >= 2 else
                f"step {k} <end>" for k in range(need.n)]

    search = TreeSearch(SearchConfig(max_iterations=50, expansions=3), random.Random(1))
    outcome, log = drive(search, policy, lambda chain: "boxed{7}" in chain)
    assert (outcome.solved, outcome.iteration, outcome.iterations_run) == (True, 2, 3)
    assert outcome.chain[-1] == FINAL and "".join(outcome.chain) == log[-1].chain
    assert isinstance(log[-1], Verdict)    # nothing asked after the success
    assert search.root.visits == 2         # the successful iteration is not backpropagated


def test_success_at_the_first_iteration_is_iteration_zero():
    search = TreeSearch(SearchConfig(), random.Random(0))
    outcome, log = drive(search, lambda need: [FINAL] * need.n, lambda chain: True)
    assert (outcome.solved, outcome.iteration, outcome.iterations_run) == (True, 0, 1)
    assert len(log) == 2


def test_unsolved_after_the_cap():
    search = TreeSearch(SearchConfig(max_iterations=7, expansions=3), random.Random(0))
    outcome, _ = drive(search, lambda need: [FINAL] * need.n, lambda chain: False)
    assert (outcome.solved, outcome.iteration, outcome.iterations_run) == (False, None, 7)
    assert search.root.visits == 7


def test_selection_prefers_unvisited_then_the_least_visited_first_of_equals():
    search = TreeSearch(SearchConfig(expansions=3), FirstChoice())
    root = search.root
    root.children = [search._child(root, f"{k} <end>") for k in range(3)]
    root.visits, visits = 4, (2, 1, 1)
    for child, v in zip(root.children, visits):
        child.visits = v
    assert select_child(root, 1.0) is root.children[1]
    root.children[2].visits = 0
    assert select_child(root, 1.0) is root.children[2]


def test_seeds_are_distinct_within_a_problem_and_shared_across_problems():
    seeds = {step_seed(0, i, k) for i in range(50) for k in range(11)}
    assert len(seeds) == 550
    assert step_seed(0, 3, 1) == step_seed(0, 3, 1) != step_seed(1, 3, 1)


def test_seeded_search_is_deterministic():
    def policy(need):
        rng = random.Random(f"{need.seed}:{need.steps}")
        return [FINAL if rng.random() < 0.2 else f"s{rng.randrange(3)} <end>" for _ in range(need.n)]

    def judge(chain):
        return random.Random(chain).random() < 0.05

    def run(seed):
        search = TreeSearch(SearchConfig(max_iterations=20, seed=seed), random.Random(f"{seed}:p"))
        outcome, log = drive(search, policy, judge)
        return outcome, log, node_visits(search.root)

    assert run(0) == run(0)
    assert run(0)[1] != run(1)[1]
