"""Business config (helpdesk/config/business.py): the shipped config/, look-ups, and broken files."""
import shutil
from pathlib import Path

import pytest
import yaml

from helpdesk.config import business
from helpdesk.config import NO_STORE, Catalog, Store, load_catalog
from helpdesk.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[3]
CONFIG = PROJECT / "config"


# the shipped config ------------------------------------------------------------------
def test_shipped_config_loads(catalog):
    assert isinstance(catalog, Catalog)
    numbers = [store.number for store in catalog.stores]
    assert len(numbers) == len(set(numbers)) > 0
    assert {1, 27, 42, 60} <= set(numbers)
    names = [system.name for system in catalog.systems]
    assert "otro" in names and "POS" in names and "terminal de pago" in names
    # every system points at a known department
    assert all(system.department in catalog.departments for system in catalog.systems)
    assert catalog.departments["payments"].name == "Medios de pago"
    assert catalog.priority.labels == {"urgent": "urgente", "normal": "normal"}
    # phrases are stored folded (no accents)
    assert "sistema caido" in catalog.priority.urgent_phrases
    assert "no es urgente" in catalog.priority.not_urgent_phrases


def test_shipped_dialogue_settings(catalog):
    dialogue = catalog.dialogue
    assert dialogue.store_max_attempts == 2
    assert dialogue.prefill_description_min_words == 2
    assert dialogue.description_max_chars == 4000
    assert dialogue.reference_prefix == "HD-"
    assert dialogue.max_message_chars == 4000
    assert dialogue.max_body_bytes == 65536
    assert dialogue.recent_tickets == 3
    assert set(dialogue.state_labels) == {"pending_delivery", "delivered", "failed"}


def test_process_catalog_reads_the_configured_directory(monkeypatch, tmp_path):
    broken = tmp_path / "config"
    shutil.copytree(CONFIG, broken)
    (broken / "stores.yml").unlink()
    business.catalog.cache_clear()
    try:
        assert [s.number for s in business.catalog().stores] == [
            s.number for s in load_catalog(CONFIG).stores
        ]
        business.catalog.cache_clear()
        monkeypatch.setenv("HELPDESK_CONFIG_DIR", str(broken))
        with pytest.raises(ConfigError, match="stores.yml: file not found"):
            business.catalog()
    finally:
        business.catalog.cache_clear()


# stores ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, number",
    [
        ("tienda 42", 42),
        ("Tienda 42", 42),
        ("la 27", 27),
        ("sucursal centro", 1),
        ("Sucursal Centro", 1),
        ("suc. 8", 8),
        ("42", 42),
        ("#42", 42),
        ("nº 42", 42),
        ("Tienda N° 15", 15),
        ("tienda nro 15", 15),
        ("local 3", 3),
        ("casa matriz", 1),
        ("Güemes", 40),
        ("guemes", 40),
        ("GUEMES", 40),
        ("los alamos", 7),
        ("Los Álamos", 7),
        ("en la 12 no anda la caja", 12),
        # longest name first: "shopping oeste" is store 31, "oeste" alone store 4
        ("shopping oeste", 31),
        ("oeste", 4),
        ("deposito", 60),
        ("la avenida", 42),
    ],
)
def test_find_store(catalog, text, number):
    store = catalog.find_store(text)
    assert store is not None, text
    assert store.number == number


@pytest.mark.parametrize(
    "text", ["tienda 99", "99", "la caja 2", "", "   ", "hola", "tenemos 2 cajas", "son las 10"]
)
def test_find_store_unknown_or_not_a_store(catalog, text):
    assert catalog.find_store(text) is None


def test_store_display_and_by_number(catalog):
    store = catalog.store_by_number(42)
    assert store == Store(number=42, name="Avenida", aliases=("la avenida",))
    assert store.display == "Tienda 42 (Avenida)"
    assert catalog.store_by_number(99) is None


@pytest.mark.parametrize(
    "text, number",
    [
        ("tienda 99", 99),
        ("tienda 42", 42),
        ("la 27", 27),
        ("suc. 8", 8),
        ("Tienda N° 15", 15),
        ("42", 42),
        ("#7", 7),
        ("sucursal centro", None),
        ("la caja 2", None),
        ("hola", None),
        ("", None),
    ],
)
def test_store_number_mentioned(text, number):
    assert Catalog.store_number_mentioned(text) == number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sin tienda", True),
        ("Continuar sin tienda", True),
        ("sin especificar", True),
        (NO_STORE, True),
        ("tienda 42", False),
        ("", False),
    ],
)
def test_means_no_store(text, expected):
    assert Catalog.means_no_store(text) is expected


@pytest.mark.parametrize(
    "text, number",
    [
        ("tienda 42, frente a la terminal", 42),
        ("la 27, al lado del mercado", 27),
        ("tienda 8 del centro", 8),
    ],
)
def test_an_explicit_store_number_wins_over_an_incidental_store_name(catalog, text, number):
    assert catalog.find_store(text).number == number


# systems -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, name",
    [
        ("posnet", "terminal de pago"),
        ("Posnet", "terminal de pago"),
        ("datáfono", "terminal de pago"),
        ("el lector de tarjetas", "terminal de pago"),
        ("Caja", "POS"),
        ("la caja registradora", "POS"),
        ("POS", "POS"),
        ("wifi", "internet"),
        ("Wi-Fi", "internet"),
        ("se cayó la red", "internet"),
        ("se cortó la luz", "electricidad"),
        ("Báscula", "balanza"),
        ("la impresora no imprime", "impresora fiscal"),
        ("cámaras", "cámaras y alarma"),
        ("camaras", "cámaras y alarma"),
        ("otro", "otro"),
    ],
)
def test_find_system(catalog, text, name):
    system = catalog.find_system(text)
    assert system is not None, text
    assert system.name == name


@pytest.mark.parametrize("text", ["heladera", "la puerta", "", "  ", "redes sociales"])
def test_find_system_unknown(catalog, text):
    assert catalog.find_system(text) is None


def test_system_by_name_is_exact_on_the_canonical_name(catalog):
    assert catalog.system_by_name("Terminal de Pago").name == "terminal de pago"
    assert catalog.system_by_name("camaras y alarma").name == "cámaras y alarma"
    assert catalog.system_by_name("posnet") is None  # a synonym, not a name


def test_department_for(catalog):
    assert catalog.department_for(catalog.system_by_name("terminal de pago")).key == "payments"
    assert catalog.department_for(catalog.system_by_name("balanza")).name == "Mantenimiento"
    assert catalog.department_for(catalog.system_by_name("cámaras y alarma")).key == "security"
    assert catalog.department_for(catalog.system_by_name("inventario")).key == "operations"
    # no system: the department of the 'otro' fallback
    assert catalog.department_for(None) == catalog.departments["it"]


# broken config -----------------------------------------------------------------------
@pytest.fixture
def config_copy(tmp_path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    return target


def _load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dump(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _error(config_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_catalog(config_dir)
    return str(info.value)


def test_the_copy_itself_loads(config_copy):
    assert len(load_catalog(config_copy).stores) == len(load_catalog(CONFIG).stores)


@pytest.mark.parametrize(
    "name", ["stores.yml", "systems.yml", "departments.yml", "priority.yml", "dialogue.yml"]
)
def test_missing_file(config_copy, name):
    (config_copy / name).unlink()
    message = _error(config_copy)
    assert str(config_copy / name) in message
    assert "file not found" in message


def test_invalid_yaml(config_copy):
    path = config_copy / "stores.yml"
    path.write_text("stores:\n  - {number: 1, name: Centro\n", encoding="utf-8")
    message = _error(config_copy)
    assert str(path) in message
    assert "not valid YAML" in message


@pytest.mark.parametrize("content", ["- urgente\n- sistema caido\n", "just text\n", ""])
def test_top_level_not_a_mapping(config_copy, content):
    path = config_copy / "priority.yml"
    path.write_text(content, encoding="utf-8")
    message = _error(config_copy)
    assert str(path) in message
    assert "expected a mapping at the top level" in message


def test_duplicate_store_number(config_copy):
    path = config_copy / "stores.yml"
    data = _load(path)
    data["stores"].append({"number": 42, "name": "Nueva", "aliases": []})
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert f"stores[{len(data['stores']) - 1}]" in message
    assert "store number 42 appears twice" in message


def test_alias_shared_by_two_stores(config_copy):
    path = config_copy / "stores.yml"
    data = _load(path)
    norte = next(i for i, s in enumerate(data["stores"]) if s["number"] == 2)
    data["stores"][norte]["aliases"] = ["matriz"]  # already an alias of store 1
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert f"stores[{norte}]" in message
    assert "'matriz' is also used by store 1" in message


def test_alias_equal_to_another_store_name_after_folding(config_copy):
    path = config_copy / "stores.yml"
    data = _load(path)
    pilar = next(i for i, s in enumerate(data["stores"]) if s["number"] == 50)
    data["stores"][pilar]["aliases"] = ["guemes"]  # "Güemes" is store 40
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "'guemes' is also used by store 40" in message


def test_store_number_of_the_wrong_type(config_copy):
    path = config_copy / "stores.yml"
    data = _load(path)
    data["stores"][0]["number"] = "uno"
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "'number' must be int, got 'uno'" in message


def test_system_with_an_unknown_department(config_copy):
    path = config_copy / "systems.yml"
    data = _load(path)
    data["systems"][0]["department"] = "finanzas"
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "systems[0]" in message
    assert "department 'finanzas' is not in departments.yml" in message
    assert "payments" in message  # the known keys are listed


def test_missing_otro_system(config_copy):
    path = config_copy / "systems.yml"
    data = _load(path)
    data["systems"] = [s for s in data["systems"] if s["name"] != "otro"]
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "'otro' is required" in message


def test_synonym_shared_by_two_systems(config_copy):
    path = config_copy / "systems.yml"
    data = _load(path)
    # impresora fiscal (systems[1]) also claims terminal de pago's (systems[2]) "posnet":
    # the later entry is the one reported
    data["systems"][1]["synonyms"].append("Posnet")
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "systems[2]" in message
    assert "synonym 'posnet' also belongs to 'impresora fiscal'" in message


def test_priority_labels_missing(config_copy):
    path = config_copy / "priority.yml"
    data = _load(path)
    del data["labels"]
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "missing 'labels'" in message


def test_priority_label_for_normal_missing(config_copy):
    path = config_copy / "priority.yml"
    data = _load(path)
    data["labels"] = {"urgent": "urgente"}
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "labels.normal must be text" in message


def test_priority_without_urgent_phrases(config_copy):
    path = config_copy / "priority.yml"
    data = _load(path)
    data["urgent_phrases"] = []
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "'urgent_phrases' is empty" in message


@pytest.mark.parametrize("value, shown", [("two", "'two'"), (True, "True"), (2.5, "2.5")])
def test_dialogue_setting_of_the_wrong_type(config_copy, value, shown):
    path = config_copy / "dialogue.yml"
    data = _load(path)
    data["ticket"]["store_max_attempts"] = value
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "ticket" in message
    assert f"'store_max_attempts' must be int, got {shown}" in message


def test_dialogue_setting_missing(config_copy):
    path = config_copy / "dialogue.yml"
    data = _load(path)
    del data["status"]["recent_tickets"]
    _dump(path, data)
    message = _error(config_copy)
    assert str(path) in message
    assert "status: missing 'recent_tickets'" in message
