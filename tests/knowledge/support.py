"""The knowledge index the knowledge tests search: the project's real articles, built once
per test session with the project's settings into a pytest temporary directory."""
from dataclasses import replace
from pathlib import Path
from typing import Optional

import pytest

from knowledge.embedder import make_embedder
from knowledge.index import build_index
from knowledge.retrieval import KnowledgeBase
from helpdesk.config import KnowledgeConfig, load_knowledge_config

PROJECT = Path(__file__).resolve().parents[2]
# the session's index; the fixture is imported into several test modules, which would each
# build it otherwise
_index_dir: Optional[Path] = None


def project_settings(**changes) -> KnowledgeConfig:
    """config/knowledge.yml of the project (not of HELPDESK_CONFIG_DIR), with changes."""
    settings = load_knowledge_config(PROJECT / "config" / "knowledge.yml")
    return replace(settings, **changes) if changes else settings


@pytest.fixture(scope="session")
def articles_index(tmp_path_factory) -> Path:
    """Directory of an index of knowledge/articles/ (built once per session)."""
    global _index_dir
    if _index_dir is None or not (_index_dir / "meta.json").is_file():
        directory = tmp_path_factory.mktemp("knowledge") / "index"
        settings = project_settings(index_dir=directory)
        build_index(settings, make_embedder(settings))
        _index_dir = directory
    return _index_dir


@pytest.fixture(scope="session")
def knowledge_base(articles_index: Path) -> KnowledgeBase:
    return KnowledgeBase.load(project_settings(index_dir=articles_index))
