"""Readers of the YAML files in `config/`, one module per file, checked on load.

business.py reads stores, systems, departments, priority and dialogue into the Catalog and holds
the shared YAML helpers (`read_yaml`, `require_key`); channels.py, chatwoot.py, zoho.py, llm.py and
knowledge.py read the file of the same name. Other code imports from this package only.
"""
from helpdesk.config.business import (  # noqa: F401
    Catalog,
    NO_STORE,
    PriorityRules,
    Store,
    catalog,
    load_catalog,
    read_yaml,
    require_key,
)
from helpdesk.config.channels import (  # noqa: F401
    ChannelConfig,
    channel_config,
    load_channel_config,
)
from helpdesk.config.chatwoot import (  # noqa: F401
    ChatwootOptions,
    chatwoot_options,
    load_options,
)
from helpdesk.config.knowledge import (  # noqa: F401
    AnswerSettings,
    EmbedderSettings,
    KnowledgeSettings,
    LexicalSettings,
    RetrievalSettings,
    load_knowledge_settings,
)
from helpdesk.config.llm import (  # noqa: F401
    LlmConfig,
    Price,
    llm_config,
    load_llm_config,
)
from helpdesk.config.zoho import (  # noqa: F401
    DeliveryPolicy,
    RetryPolicy,
    TicketShape,
    ZohoConfig,
    load_zoho_config,
    zoho_config,
)

__all__ = [
    "read_yaml",
    "require_key",
    "AnswerSettings",
    "Catalog",
    "ChannelConfig",
    "ChatwootOptions",
    "DeliveryPolicy",
    "EmbedderSettings",
    "KnowledgeSettings",
    "LexicalSettings",
    "LlmConfig",
    "NO_STORE",
    "Price",
    "PriorityRules",
    "RetrievalSettings",
    "RetryPolicy",
    "Store",
    "TicketShape",
    "ZohoConfig",
    "catalog",
    "channel_config",
    "chatwoot_options",
    "llm_config",
    "load_catalog",
    "load_channel_config",
    "load_knowledge_settings",
    "load_llm_config",
    "load_options",
    "load_zoho_config",
    "zoho_config",
]
