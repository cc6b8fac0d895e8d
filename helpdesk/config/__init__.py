"""Readers of the YAML files in `config/`, one module per file, named like it, checked on load.

stores.py, systems.py, departments.py, priority.py and dialogue.py read the business data that
business.py combines into the `Catalog` (with its look-ups); channels.py, chatwoot.py, zoho.py,
llm.py, knowledge.py, known_fixes.py, followups.py and retention.py read the file of the same
name. reader.py holds what they share: `read_yaml`, `require_key`, `section` and the one
checked `number`. Other code imports from this package only.
"""
from helpdesk.config.reader import (  # noqa: F401
    NumberStyle,
    number,
    read_yaml,
    require_key,
    section,
)
from helpdesk.config.business import (  # noqa: F401
    Catalog,
    catalog,
    load_catalog,
)
from helpdesk.config.departments import Department, load_departments  # noqa: F401
from helpdesk.config.dialogue import DialogueConfig  # noqa: F401
from helpdesk.config.priority import PriorityRules  # noqa: F401
from helpdesk.config.stores import (  # noqa: F401
    NO_STORE,
    Store,
    StoresConfig,
)
from helpdesk.config.systems import System  # noqa: F401
from helpdesk.config.channels import (  # noqa: F401
    ChannelConfig,
    channel_config,
    load_channel_config,
)
from helpdesk.config.chatwoot import (  # noqa: F401
    ChatwootConfig,
    chatwoot_config,
    load_chatwoot_config,
)
from helpdesk.config.followups import (  # noqa: F401
    FollowupConfig,
    followup_config,
    load_followup_config,
)
from helpdesk.config.knowledge import (  # noqa: F401
    AnswerConfig,
    EmbedderConfig,
    KnowledgeConfig,
    LexicalConfig,
    RetrievalConfig,
    knowledge_config,
    load_knowledge_config,
)
from helpdesk.config.known_fixes import (  # noqa: F401
    KnownFixConfig,
    known_fix_config,
    load_known_fix_config,
)
from helpdesk.config.llm import (  # noqa: F401
    DialogueLlmConfig,
    LlmConfig,
    Price,
    dialogue_llm_config,
    llm_config,
    load_dialogue_llm_config,
    load_llm_config,
)
from helpdesk.config.retention import (  # noqa: F401
    RetentionConfig,
    load_retention_config,
    retention_config,
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
    "section",
    "number",
    "NumberStyle",
    "AnswerConfig",
    "Catalog",
    "ChannelConfig",
    "ChatwootConfig",
    "DeliveryPolicy",
    "Department",
    "load_departments",
    "DialogueConfig",
    "DialogueLlmConfig",
    "EmbedderConfig",
    "FollowupConfig",
    "KnowledgeConfig",
    "KnownFixConfig",
    "LexicalConfig",
    "LlmConfig",
    "NO_STORE",
    "Price",
    "PriorityRules",
    "RetentionConfig",
    "RetrievalConfig",
    "RetryPolicy",
    "Store",
    "StoresConfig",
    "System",
    "TicketShape",
    "ZohoConfig",
    "catalog",
    "channel_config",
    "chatwoot_config",
    "dialogue_llm_config",
    "followup_config",
    "knowledge_config",
    "known_fix_config",
    "llm_config",
    "retention_config",
    "load_catalog",
    "load_channel_config",
    "load_chatwoot_config",
    "load_dialogue_llm_config",
    "load_followup_config",
    "load_knowledge_config",
    "load_known_fix_config",
    "load_llm_config",
    "load_retention_config",
    "load_zoho_config",
    "zoho_config",
]
