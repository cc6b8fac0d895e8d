"""Priority by rules: designer-edited phrases in `config/priority.yml` make a ticket urgent."""
from typing import Iterable, Optional

from helpdesk.config import PriorityRules
from helpdesk.text import contains_phrase, fold

URGENT = "urgent"
NORMAL = "normal"
PRIORITIES = (URGENT, NORMAL)


def matched_urgent_phrases(rules: PriorityRules, texts: Iterable[str]) -> list:
    """The urgent phrases found in the texts, leaving out those inside a negation."""
    found = []
    for text in texts:
        folded = fold(text or "")
        if not folded:
            continue
        # blank out negated mentions first, so "no es urgente" does not count as "urgente"
        for negation in rules.not_urgent_phrases:
            if contains_phrase(folded, negation):
                folded = folded.replace(negation, " ")
        found.extend(p for p in rules.urgent_phrases if contains_phrase(folded, p))
    return found


def decide_priority(
    rules: PriorityRules, texts: Iterable[str], stated: Optional[str] = None
) -> str:
    """`urgent` or `normal`: what the user stated wins; otherwise the phrases decide."""
    if stated in PRIORITIES:
        return stated
    return URGENT if matched_urgent_phrases(rules, texts) else NORMAL


def priority_label(rules: PriorityRules, priority: str) -> str:
    return rules.labels.get(priority, priority)
