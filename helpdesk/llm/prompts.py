"""LLM prompts from `prompts/*.yml`: one file per use, each with a `version`, editable by
designers without touching code. `master.yml` holds the rules every chat prompt starts with
(a prompt opts in with `master: true`).

Placeholders are `{name}` (lower-case letters and underscores); anything else in braces is
left as written, so JSON examples need no escaping. `fillers` are the texts the code writes
where it has nothing to put (no list of systems, an intent without examples): they are sent
to the model like the rest, so they live here too. A prompt's `tag` ("intent@3+master@1")
goes into logs and cache keys: editing a prompt and raising its version invalidates cached
answers.
"""
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Collection, Dict, Mapping, Optional, Set

from helpdesk.config import read_yaml
from helpdesk.errors import ConfigError
from helpdesk.settings import PROJECT_DIR

PROMPTS_DIR = PROJECT_DIR / "prompts"
MASTER = "master"
PARTS = ("system", "user", "prompt")
FILLERS = "fillers"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    parts: Dict[str, str]
    master_version: Optional[int] = None
    placeholders: Dict[str, Set[str]] = field(default_factory=dict, compare=False)
    fillers: Dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        tag = f"{self.name}@{self.version}"
        return f"{tag}+{MASTER}@{self.master_version}" if self.master_version else tag

    def render(self, part: str, values: Mapping[str, str]) -> str:
        """The part with its placeholders filled; a placeholder without a value is a bug."""
        text = self.parts[part]
        missing = self.placeholders.get(part, set()) - set(values)
        if missing:
            raise KeyError(f"prompt {self.tag} {part}: no value for {sorted(missing)}")
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def _text(data: Dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: '{key}' must be non-empty text")
    return value.strip()


def _version(data: Dict, where: str) -> int:
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{where}: 'version' must be a whole number from 1, got {version!r}")
    return version


def _fillers(data: Dict, where: str) -> Dict[str, str]:
    fillers = data.get(FILLERS, {})
    if not isinstance(fillers, dict):
        raise ConfigError(f"{where}: '{FILLERS}' must map names to texts")
    return {str(name): _text(fillers, name, f"{where} {FILLERS}") for name in fillers}


def load_prompts(directory: Path = PROMPTS_DIR) -> Dict[str, Prompt]:
    """Every prompt of a directory, checked; raises ConfigError naming the file and field."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: prompts directory not found")
    master_path = directory / f"{MASTER}.yml"
    master = read_yaml(master_path) if master_path.is_file() else None
    master_rules = _text(master, "rules", str(master_path)) if master else None
    master_version = _version(master, str(master_path)) if master else None
    prompts: Dict[str, Prompt] = {}
    for path in sorted(directory.glob("*.yml")):
        if path.stem == MASTER:
            continue
        data = read_yaml(path)
        where = str(path)
        unknown = set(data) - {"version", "master", FILLERS, *PARTS}
        if unknown:
            raise ConfigError(f"{where}: unknown field '{sorted(unknown)[0]}'")
        parts = {part: _text(data, part, where) for part in PARTS if part in data}
        if not parts:
            raise ConfigError(f"{where}: needs 'system' and 'user', or 'prompt'")
        if ("system" in parts) != ("user" in parts):
            raise ConfigError(f"{where}: a chat prompt needs both 'system' and 'user'")
        uses_master = data.get("master", False)
        if not isinstance(uses_master, bool):
            raise ConfigError(f"{where}: 'master' must be true or false")
        if uses_master:
            if master_rules is None:
                raise ConfigError(f"{where}: 'master: true' but {master_path} is missing")
            if "system" not in parts:
                raise ConfigError(f"{where}: 'master: true' needs a 'system' part")
            parts["system"] = f"{master_rules}\n\n{parts['system']}"
        prompts[path.stem] = Prompt(
            name=path.stem,
            version=_version(data, where),
            parts=parts,
            master_version=master_version if uses_master else None,
            placeholders={part: set(_PLACEHOLDER.findall(text)) for part, text in parts.items()},
            fillers=_fillers(data, where),
        )
    return prompts


def require(prompts: Mapping[str, Prompt], name: str,
            placeholders: Mapping[str, Set[str]], fillers: Collection[str] = ()) -> Prompt:
    """The named prompt, checked to use only the placeholders the code fills and to have
    exactly the fillers the code writes."""
    prompt = prompts.get(name)
    if prompt is None:
        raise ConfigError(f"prompts/{name}.yml is missing")
    for part, expected in placeholders.items():
        if part not in prompt.parts:
            raise ConfigError(f"prompts/{name}.yml: missing '{part}'")
        unknown = prompt.placeholders[part] - set(expected)
        if unknown:
            raise ConfigError(
                f"prompts/{name}.yml: {part} uses {{{sorted(unknown)[0]}}}, which is not "
                f"filled (available: {', '.join('{%s}' % p for p in sorted(expected)) or 'none'})")
    missing = sorted(set(fillers) - set(prompt.fillers))
    if missing:
        raise ConfigError(f"prompts/{name}.yml: missing {FILLERS}.{missing[0]}")
    unused = sorted(set(prompt.fillers) - set(fillers))
    if unused:
        raise ConfigError(f"prompts/{name}.yml: {FILLERS}.{unused[0]} is not used "
                          f"(used: {', '.join(sorted(fillers)) or 'none'})")
    return prompt


@lru_cache(maxsize=1)
def prompts() -> Dict[str, Prompt]:
    """The project's prompts, read once per process."""
    return load_prompts(PROMPTS_DIR)
