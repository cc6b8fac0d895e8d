"""scripts/sync_nlu.py: the generated NLU files mirror config/."""
import importlib.util
import shutil
import subprocess
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
PYTHON = PROJECT / ".venv" / "bin" / "python"
SCRIPT = PROJECT / "scripts" / "sync_nlu.py"


def _script_module():
    spec = importlib.util.spec_from_file_location("sync_nlu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_nlu_files_are_in_sync():
    result = subprocess.run(
        [str(PYTHON), str(SCRIPT), "--check"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "out of date" not in result.stdout


def test_generated_text_matches_the_committed_files():
    sync = _script_module()
    config = PROJECT / "config"
    assert sync.stores_yaml(config) == (PROJECT / "data/nlu/lookup_stores.yml").read_text(encoding="utf-8")
    assert sync.systems_yaml(config) == (PROJECT / "data/nlu/synonyms_systems.yml").read_text(encoding="utf-8")


def test_generated_files_are_valid_nlu_yaml():
    stores = yaml.safe_load((PROJECT / "data/nlu/lookup_stores.yml").read_text(encoding="utf-8"))
    lookup = stores["nlu"][0]
    assert lookup["lookup"] == "store"
    examples = [line[2:] for line in lookup["examples"].splitlines()]
    assert "tienda centro" in examples and "sucursal guemes" in examples
    systems = yaml.safe_load((PROJECT / "data/nlu/synonyms_systems.yml").read_text(encoding="utf-8"))
    synonyms = {entry["synonym"]: entry["examples"] for entry in systems["nlu"]}
    assert "- posnet" in synonyms["terminal de pago"].splitlines()


def test_a_config_change_makes_the_files_stale(tmp_path):
    sync = _script_module()
    config = tmp_path / "config"
    shutil.copytree(PROJECT / "config", config)
    stores = config / "stores.yml"
    stores.write_text(
        stores.read_text(encoding="utf-8") + "  - {number: 99, name: Nueva Córdoba, aliases: []}\n",
        encoding="utf-8",
    )
    text = sync.stores_yaml(config)
    assert "    - tienda nueva córdoba\n" in text
    assert "    - tienda nueva cordoba\n" in text
    assert text != (PROJECT / "data/nlu/lookup_stores.yml").read_text(encoding="utf-8")
