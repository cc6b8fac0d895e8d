"""The LLM: the one client for OpenAI-compatible endpoints (client.py) and its retry policy
(retry.py); what each use asks and how its answer is checked (uses.py, schemas.py); the
process's default client and the uses bound to it, which the bot calls (default.py); prompts
(prompts.py), providers (providers.py), tokens and budgets (budget.py) and embeddings for the
index build (embed.py). Other code imports from this package only.
"""
from helpdesk.llm.budget import (  # noqa: F401
    Usage,
    cost_usd,
    month_of,
    read_usage,
)
from helpdesk.llm.client import (  # noqa: F401
    LlmClient,
)
from helpdesk.llm.default import (  # noqa: F401
    answer_from_passages,
    check_configuration,
    choose_intent,
    close_default_client,
    default_client,
    phrase_subject,
    read_screenshot,
    reset_conversation_budget,
    transcribe,
    usage_totals,
)
from helpdesk.llm.embed import (  # noqa: F401
    LlmUnavailable,
    OpenAIEmbedder,
    embedder,
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
    "close_default_client",
    "cost_usd",
    "default_client",
    "embedder",
    "load_prompts",
    "month_of",
    "parse_fallbacks",
    "phrase_subject",
    "provider_chain",
    "providers_for",
    "read_screenshot",
    "read_usage",
    "require",
    "reset_conversation_budget",
    "transcribe",
    "usage_totals",
]
