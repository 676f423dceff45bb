"""QuRating's four quality criteria and its prompt templates (princeton-nlp/QuRating, `prompting/templates/`).

The eight reference templates share one skeleton and differ only in the criterion sentence, so each
is built from the skeleton and the criterion's wording; the result is the reference text byte for
byte (tests pin it). A custom criterion uses the same skeleton with the user's wording.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM_PROMPT = "You are a helpful assistant."     # the reference scripts' default --system_prompt

PAIRWISE_TEMPLATE = (
    "Compare two text excerpts and choose the text which {criterion}\n\n"
    "Aspects that should NOT influence your judgement:\n"
    "1. Which language the text is written in\n"
    "2. The length of the text\n"
    "3. The order in which the texts are presented\n\n"
    "Note that the texts are cut off, so you have to infer their contexts.\n"
    "The texts might have similar quality, but you should still make a relative judgement and choose the label "
    "of the preferred text.\n\n"
    "[Option {{label_a}}]\n... {{text_a}} ...\n\n\n"
    "[Option {{label_b}}]\n... {{text_b}} ...\n\n\n"
    "Now you have to choose between either {{label_a}} or {{label_b}}. Respond only with a single word."
)

INDIVIDUAL_TEMPLATE = (
    "I need to rate a text excerpt on a scale of {{grade_min}} to {{grade_max}} (inclusive) based on {criterion}\n\n"
    "Aspects that should NOT influence your judgement:\n"
    "1. Which language the text is written in\n"
    "2. The length of the text\n\n"
    "Note that the text is cut off, so you have to infer its context.\n\n"
    "[Text]\n... {{text}} ...\n\n\n"
    "Now assign a number grade between {{grade_min}} to {{grade_max}} (inclusive). Respond only with a single digit.\n"
    "The score for the quality of the text is:"
)


@dataclass(frozen=True)
class Criterion:
    name: str
    pairwise: str      # completes "choose the text which ..."
    individual: str    # completes "rate ... based on ..."

    def pairwise_template(self) -> str:
        return PAIRWISE_TEMPLATE.format(criterion=self.pairwise)

    def individual_template(self) -> str:
        return INDIVIDUAL_TEMPLATE.format(criterion=self.individual)


CRITERIA = {c.name: c for c in [
    Criterion("writing_style", "has a more polished and beautiful writing style.",
              "how polished and beautiful its writing style is."),
    Criterion("facts_and_trivia", "contains more facts and trivia. Prefer specific facts and obscure trivia over "
                                  "more common knowledge.",
              "how much facts and trivia it contains. Prefer specific facts and obscure trivia over more common "
              "knowledge."),
    Criterion("educational_value", "has more educational value, e.g., it includes clear explanations, step-by-step "
                                   "reasoning, or questions and answers.",
              "its educational value, e.g., it includes clear explanations, step-by-step reasoning, or questions "
              "and answers."),
    # The reference's individual wording has no final period; kept.
    Criterion("required_expertise", "requires greater expertise and prerequisite knowledge to understand it.",
              "how much expertise and prerequisite knowledge is required to understand it"),
]}


def get_criterion(name: str, description: str | None = None) -> Criterion:
    """A preset by name, or a custom criterion: `description` completes both templates' sentences.

    e.g. name="helpfulness", description="is more helpful to the user who asked."
    """
    from curate.errors import CurateError

    if description:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise CurateError(f"--criterion {name!r}: a custom criterion needs a short name (letters, digits, _ or -)")
        literal = description.replace("{", "{{").replace("}", "}}")     # the templates are format strings
        return Criterion(name, literal, literal)
    if name not in CRITERIA:
        raise CurateError(f"unknown criterion {name!r}; presets: {', '.join(CRITERIA)} "
                          "(or give --criterion-text for a custom one)")
    return CRITERIA[name]
