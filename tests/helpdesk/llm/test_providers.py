"""The provider chain from the LLM_* settings and LLM_FALLBACKS (helpdesk.llm.providers)."""
import pytest

from helpdesk.errors import ConfigError
from helpdesk.llm import parse_fallbacks, provider_chain, providers_for
from helpdesk.settings import LlmSettings
from tests.helpdesk.llm.support import CHAT_MODEL


def settings(**values):
    base = dict(base_url="https://api.openai.com/v1", api_key="sk-main", model=CHAT_MODEL,
                vision_model="gpt-4o", embedding_model="text-embedding-3-small",
                transcribe_model="whisper-1", fallbacks=None)
    base.update(values)
    return LlmSettings(**base)


def test_the_chain_from_settings(monkeypatch):
    monkeypatch.setenv("XAI_KEY_FOR_TEST", "xai-123")
    chain_ = provider_chain(settings(fallbacks=(
        "https://generativelanguage.googleapis.com/v1beta/openai/|gemini-1.5-flash|"
        "XAI_KEY_FOR_TEST|vision=gemini-1.5-flash, "
        "https://api.openai.com/v1|gpt-4o|transcribe=gpt-4o-mini-transcribe, "
        "http://127.0.0.1:11434/v1|llama3.1")), "https://api.openai.com/v1")
    assert [p.chat_model for p in chain_] == [CHAT_MODEL, "gemini-1.5-flash", "gpt-4o",
                                              "llama3.1"]
    assert [p.position for p in chain_] == [0, 1, 2, 3]
    assert chain_[1].base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert chain_[1].api_key == "xai-123"
    assert chain_[2].api_key == "sk-main"  # same base URL as the primary: same key
    assert chain_[3].api_key is None  # a local server without a key
    assert [p.chat_model for p in providers_for(chain_, "vision")] == [CHAT_MODEL,
                                                                       "gemini-1.5-flash"]
    assert [p.transcribe_model for p in providers_for(chain_, "transcribe")] == [
        "whisper-1", "gpt-4o-mini-transcribe"]
    # embeddings never fall back: another model's vectors do not match the index
    assert [p.position for p in providers_for(chain_, "embedding")] == [0]
    assert "sk-main" not in chain_[0].label and chain_[0].label == "api.openai.com#0"


def test_no_base_url_uses_the_configured_default():
    chain_ = provider_chain(settings(base_url=None), "https://api.openai.com/v1")
    assert chain_[0].base_url == "https://api.openai.com/v1"
    assert provider_chain(None, "https://api.openai.com/v1") == []


@pytest.mark.parametrize("text, message", [
    ("https://x.example/v1", "expected base_url|model"),
    ("ftp://x.example|m", r"not an http\(s\) base URL"),
    ("https://x.example/v1|m|NOT_SET_ANYWHERE_KEY", "NOT_SET_ANYWHERE_KEY"),
    ("https://x.example/v1|m|colour=red", "unknown option 'colour'"),
])
def test_broken_fallback_entries_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_fallbacks(text, None)
