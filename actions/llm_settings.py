"""What the dialogue's LLM steps read from `config/llm.yml` beyond the client's own settings
(`helpdesk.config.llm` reads the rest of the file and ignores these keys):

    nlu_fallback.never_chosen          intents the LLM is never offered
    screenshot.max_images_per_message  images of one message sent to the vision model
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Tuple

from helpdesk.config import read_yaml
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings


@dataclass(frozen=True)
class DialogueLlmSettings:
    never_chosen: Tuple[str, ...]
    max_images_per_message: int


def load_dialogue_llm_settings(path: Path) -> DialogueLlmSettings:
    data = read_yaml(path)
    where = str(path)
    nlu = data.get("nlu_fallback") or {}
    screenshot = data.get("screenshot") or {}
    if not isinstance(nlu, dict) or not isinstance(screenshot, dict):
        raise ConfigError(f"{where}: 'nlu_fallback' and 'screenshot' must be mappings")
    never = nlu.get("never_chosen", [])
    if not isinstance(never, list) or not all(isinstance(i, str) and i for i in never):
        raise ConfigError(f"{where}: nlu_fallback.never_chosen must be a list of intent names")
    images = screenshot.get("max_images_per_message", 3)
    if isinstance(images, bool) or not isinstance(images, int) or images < 0:
        raise ConfigError(f"{where}: screenshot.max_images_per_message must be a whole number "
                          f"(0 or more), got {images!r}")
    return DialogueLlmSettings(never_chosen=tuple(never), max_images_per_message=images)


@lru_cache(maxsize=None)
def _settings_from(path: Path) -> DialogueLlmSettings:
    return load_dialogue_llm_settings(path)


def dialogue_llm_settings() -> DialogueLlmSettings:
    """config/llm.yml of the configured config directory, read once per process."""
    return _settings_from(load_settings().config_dir / "llm.yml")
