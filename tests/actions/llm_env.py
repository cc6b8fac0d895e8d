"""What the LLM action tests share: the bot's configuration with quick LLM timings, the LLM_*
settings pointing at a fake OpenAI-compatible server (or unset), the session's real Redis,
and running an action on a fresh event loop with the LLM client closed afterwards."""
import asyncio
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import known_fix
from helpdesk import llm
from helpdesk.config import knowledge as knowledge_file, known_fixes as known_fixes_file, llm as llm_file
from helpdesk.config import llm_config
from knowledge.retrieval import forget_shared_knowledge_bases
from tests.actions.helpers import PROJECT, Conversation, domain_dict
from tests.fakes.openai_server import FakeOpenAI

CHAT_MODEL = "gpt-4o-mini"
VISION_MODEL = "gpt-4o"
TRANSCRIBE_MODEL = "whisper-1"


def forget_config_caches() -> None:
    llm_config.cache_clear()
    llm_file._dialogue_config_at.cache_clear()
    known_fixes_file._config_at.cache_clear()
    known_fix._best.clear()
    knowledge_file._config_at.cache_clear()
    forget_shared_knowledge_bases()


def config_dir_for(tmp_path: Path, *, timeout: float = 1.0, known_fixes: Optional[Dict[str, Any]] = None,
                llm_changes: Optional[Dict[str, Dict[str, Any]]] = None,
                knowledge_index: Optional[Path] = None) -> Path:
    """config/ with every LLM use's timeout at `timeout` s (deadline 2x), no retries
    backoff to speak of, the given changes to known_fixes.yml and llm.yml sections, and the
    knowledge index at `knowledge_index` (the project's build/knowledge when None)."""
    target = tmp_path / "config"
    shutil.copytree(PROJECT / "config", target)
    data = yaml.safe_load((target / "llm.yml").read_text(encoding="utf-8"))
    for use in data["uses"].values():
        use["timeout_seconds"] = timeout
        use["deadline_seconds"] = timeout * 2
    data["request"]["backoff_initial_seconds"] = 0.01
    data["request"]["backoff_max_seconds"] = 0.05
    for section, changes in (llm_changes or {}).items():
        data[section] = {**(data.get(section) or {}), **changes}
    (target / "llm.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    if knowledge_index is not None:
        knowledge = yaml.safe_load((target / "knowledge.yml").read_text(encoding="utf-8"))
        knowledge["index_dir"] = str(knowledge_index)
        (target / "knowledge.yml").write_text(yaml.safe_dump(knowledge, allow_unicode=True),
                                              encoding="utf-8")
    fixes = yaml.safe_load((target / "known_fixes.yml").read_text(encoding="utf-8"))
    fixes.update(known_fixes or {})
    (target / "known_fixes.yml").write_text(yaml.safe_dump(fixes), encoding="utf-8")
    return target


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str,
              fake: Optional[FakeOpenAI] = None, **config: Any) -> None:
    """The action server's environment: LLM_* at the fake (unset without one)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("HELPDESK_CONFIG_DIR", str(config_dir_for(tmp_path, **config)))
    for name in ("LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_VISION_MODEL",
                 "LLM_TRANSCRIBE_MODEL", "LLM_EMBEDDING_MODEL", "LLM_FALLBACKS"):
        monkeypatch.delenv(name, raising=False)
    if fake is not None:
        monkeypatch.setenv("LLM_BASE_URL", fake.base_url)
        monkeypatch.setenv("LLM_API_KEY", "sk-test")
        monkeypatch.setenv("LLM_MODEL", CHAT_MODEL)
        monkeypatch.setenv("LLM_VISION_MODEL", VISION_MODEL)
    forget_config_caches()


async def _closing(coroutine: Any) -> Any:
    try:
        return await coroutine
    finally:
        await llm.close_default_client()
        client = known_fix._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await client.close()
            await client.connection_pool.disconnect()


def run_async(coroutine: Any) -> Any:
    """Run on a fresh loop, as the action server would, closing the loop's clients after."""
    return asyncio.run(_closing(coroutine))


def run(action: Action, tracker: Tracker, domain: Optional[Dict[str, Any]] = None):
    """One action as the action server runs it; returns (events, dispatcher)."""
    dispatcher = CollectingDispatcher()
    events = run_async(action.run(dispatcher, tracker, domain or domain_dict()))
    return events, dispatcher


def form_turn(conversation: Conversation):
    """validate_ticket_form for the latest user message (helpers.form_turn, with the LLM
    client closed after); its events join the conversation."""
    from actions.ticket_form import ValidateTicketForm

    events, dispatcher = run(ValidateTicketForm(), conversation.form_validation_tracker())
    conversation.form_ran(events)
    return events, dispatcher
