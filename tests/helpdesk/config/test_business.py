"""The catalog (helpdesk/config/business.py): the shipped config/ combined, the store and system
look-ups, and every file it reads named when broken."""
import shutil

import pytest

from helpdesk.config import business
from helpdesk.config import NO_STORE, Catalog, load_catalog
from helpdesk.errors import ConfigError
from tests.helpdesk.config.support import CONFIG, catalog_error


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
def test_store_number_mentioned(catalog, text, number):
    assert catalog.store_number_mentioned(text) == number


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
def test_the_copy_itself_loads(config_copy):
    assert len(load_catalog(config_copy).stores) == len(load_catalog(CONFIG).stores)


@pytest.mark.parametrize(
    "name", ["stores.yml", "systems.yml", "departments.yml", "priority.yml", "dialogue.yml"]
)
def test_missing_file(config_copy, name):
    (config_copy / name).unlink()
    message = catalog_error(config_copy)
    assert str(config_copy / name) in message
    assert "file not found" in message
