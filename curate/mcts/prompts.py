r"""ThinkLite-VL's prompts (si0wang/ThinkLite-VL, mcts.py): the few-shot step prompt and the judge's.

Written as the reference meant them, not as its strings came out. Its `few_shot_cot_prompt` is a plain
(not raw) string, so the `\b` of `$\boxed{}$` became a backspace character (the policy saw
`$<BS>oxed{}$`), and its examples read `$boxed{217}$`, a backslash short; here both say `$\boxed{...}$`
(`curate.answers.final_answer` still reads a bare `boxed{}`, should a policy write one). Its
`_run_vlm` built the continuation prompt as `apply_chat_template(..., add_generation_prompt=True)[:-32]`,
meaning to cut Qwen's `<|im_end|>\n<|im_start|>assistant\n`, which is 33 characters: a stray `<` was
left at the end of every prompt, and at the root (no assistant message yet) it cut the generation
prompt itself, so the first step continued the user turn. Here the root opens the assistant turn
(`add_generation_prompt`) and every later step continues the assistant message holding the steps so
far (`continue_final_message`), as the backend's chat template renders it.
"""

from __future__ import annotations

from collections.abc import Sequence

STEP_PROMPT = r"""Answer the question **step by step** and provide the final answer at the end, each step should end with **<end>** and put your final answer within $\boxed{}$. Below are two examples:
Question: BoatsRUs built 7 canoes in January of this year and then each subsequent calendar month they built twice the number of canoes they had built the previous month. How many total canoes were built by BoatsRUs by the end of May of this year?
### Step1: To find the result of the total number of canoes built by BoatsRUs by the end of May, I need to find the number of canoes built in each month from January to May and then add them up. <end>
### Step2: To find the number of canoes built in each month, I need to use the formula for the number of canoes built in a given month, which is the number of canoes built in the previous month times 2. <end>
### Step3: So, the number of canoes built in January is 7, the number of canoes built in February is 7 times 2, which is 14, the number of canoes built in March is 14 times 2, which is 28, the number of canoes built in April is 28 times 2, which is 56, and the number of canoes built in May is 56 times 2, which is 112. <end>
### Step4: Now, I can add up these numbers to get the total number of canoes built by BoatsRUs by the end of May: 7 plus 14 plus 28 plus 56 plus 112, which is 217. <end>
### Final Answer: The answer is: $\boxed{217}$.
Question: Find the number of blue circles in the figure.
### Step 1: To find the result of the number of blue circles, I need to interpret the figure. The figure is a Venn diagram with two labeled sets: - One set labeled "blue" contains all the shapes that are blue in color. - The other set labeled "circle" contains all the shapes that are circular in shape. The overlapping region of the Venn diagram contains shapes that are both blue and circular. <end>
### Step 2: The overlapping region contains shapes that meet both criteria: Blue color and Circle shape. From the diagram: - There is **one blue circle** in the overlapping region. <end>
### Final Answer: The answer is: $\boxed{1}$.
Remember to answer the question **step by step**! Here is your question:
"""  # the reference's text, line for line

STEP_END = "<end>"                 # a step stops at (and keeps) this
FINAL_ANSWER = "Final Answer: "    # a step containing this ends the chain

# The reference's first line ends with a space; kept.
JUDGE_PROMPT = ("Please help me judge the correctness of the generated answer and the corresponding rationale. \n"
                "Question: {question}\n"
                "Ground truth answer: {gold}\n"
                "Generated rationale and answer: {chain}\n"
                "Your output should only be one sentence: the generated answer is true or false.")
JUDGE_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def step_messages(question: str, steps: Sequence[str]) -> tuple[tuple[dict[str, str], ...], bool]:
    """(messages, continue_final_message) asking the policy for the step after `steps`."""
    user = {"role": "user", "content": STEP_PROMPT + question}
    if not steps:
        return (user,), False
    return (user, {"role": "assistant", "content": "".join(steps)}), True


def judge_messages(question: str, gold: str, chain: str, system: str = JUDGE_SYSTEM) -> tuple[dict[str, str], ...]:
    user = {"role": "user", "content": JUDGE_PROMPT.format(question=question, gold=gold, chain=chain)}
    return ({"role": "system", "content": system}, user) if system else (user,)


def judge_says_true(reply: str) -> bool:
    """The reference's verdict: "true" (lower case) appears in the reply's first sentence."""
    return "true" in reply.split(".")[0]
