"""`config/departments.yml`: the departments tickets go to (name and Zoho Desk id), checked on
load."""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from helpdesk.config.reader import read_yaml, require_key
from helpdesk.errors import ConfigError


@dataclass(frozen=True)
class Department:
    key: str
    name: str
    zoho_id: str


def load_departments(path: Path) -> Dict[str, Department]:
    entries = require_key(read_yaml(path), "departments", dict, str(path))
    departments = {}
    for key, entry in entries.items():
        where = f"{path}: departments.{key}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with name and zoho_id")
        name = require_key(entry, "name", str, where)
        zoho_id = entry.get("zoho_id") or ""
        departments[str(key)] = Department(key=str(key), name=name, zoho_id=str(zoho_id))
    return departments
