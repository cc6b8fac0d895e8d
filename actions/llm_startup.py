"""The LLM configuration, checked and logged when the action server starts.

rasa-sdk imports every module of the `actions` package when `rasa run actions` starts, so the
check runs here, at import: a broken config/llm.yml, config/known_fixes.yml or prompt stops
the action server with a `ConfigError` naming the file and the field (instead of every LLM
use failing quietly later), and the log says which providers serve which uses, or that the
bot runs without an LLM. With a chat model, the NLU fallback's training examples are read
here too, so the first unsure message does not wait for them.
"""
import logging
from typing import Dict, List

from actions.nlu_fallback import TRAINING_DIR, _examples_from
from helpdesk import llm
from helpdesk.errors import ConfigError
from helpdesk.config import dialogue_llm_config, known_fix_config, llm_config
from helpdesk.llm import KINDS, provider_chain, providers_for
from helpdesk.settings import load_llm

logger = logging.getLogger(__name__)


def llm_configuration() -> Dict[str, List[str]]:
    """{"providers": [labels], "<kind>": [labels serving it]} (raises ConfigError)."""
    labels = llm.check_configuration()
    dialogue_llm_config()
    known_fix_config()
    chain = provider_chain(load_llm(), llm_config().default_base_url)
    return {"providers": labels, **{kind: [p.label for p in providers_for(chain, kind)]
                                    for kind in KINDS}}


def log_llm_configuration() -> Dict[str, List[str]]:
    try:
        found = llm_configuration()
    except ConfigError as error:
        logger.error("LLM configuration is broken: %s", error)
        raise
    if found["providers"]:
        logger.info("LLM providers: %s", ", ".join(found["providers"]),
                    extra={kind: labels for kind, labels in found.items() if kind != "providers"})
        if found["chat"]:
            _examples_from(TRAINING_DIR)  # the NLU fallback's examples, read now, not in a turn
    else:
        logger.info("no LLM configured (LLM_* unset): screenshots are attached, voice notes "
                    "ask for text, how-to answers quote the article, unsure messages get "
                    "Rasa's fallback")
    return found


log_llm_configuration()
