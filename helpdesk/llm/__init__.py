"""The LLM: the one client for OpenAI-compatible endpoints and the bot's bound uses (client.py),
what each use asks and how its answer is checked (uses.py, schemas.py), prompts (prompts.py),
providers (providers.py), tokens and budgets (budget.py) and embeddings (embed.py). Other code
imports from this package only.
"""
from helpdesk.llm.budget import (  # noqa: F401
    Usage,
    cost_usd,
    month_of,
    read_usage,
)
from helpdesk.llm.client import (  # noqa: F401
    LlmClient,
    answer_from_passages,
    check_configuration,
    choose_intent,
    read_screenshot,
    transcribe,
)
from helpdesk.llm.embed import (  # noqa: F401
    LlmUnavailable,
    OpenAIEmbedder,
)
from helpdesk.llm.prompts import (  # noqa: F401
    load_prompts,
    require,
)
from helpdesk.llm.providers import (  # noqa: F401
    KINDS,
    Provider,
    parse_fallbacks,
    provider_chain,
    providers_for,
)
from helpdesk.llm.uses import (  # noqa: F401
    KnowledgeAnswer,
    PLACEHOLDERS,
    check_prompts,
)

__all__ = [
    "answer_from_passages",
    "KINDS",
    "KnowledgeAnswer",
    "LlmClient",
    "LlmUnavailable",
    "OpenAIEmbedder",
    "PLACEHOLDERS",
    "Provider",
    "Usage",
    "check_configuration",
    "check_prompts",
    "choose_intent",
    "cost_usd",
    "load_prompts",
    "month_of",
    "parse_fallbacks",
    "provider_chain",
    "providers_for",
    "read_screenshot",
    "read_usage",
    "require",
    "transcribe",
]
