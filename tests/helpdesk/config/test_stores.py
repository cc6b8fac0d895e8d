"""config/stores.yml (helpdesk/config/stores.py): the store label, the words that name a store,
and clear errors for a broken list."""
import pytest

from helpdesk.config import Store, load_catalog
from helpdesk.config.stores import load_stores
from helpdesk.errors import ConfigError
from tests.helpdesk.config.support import CONFIG, catalog_error, dump, load


def test_store_display_and_by_number(catalog):
    store = catalog.store_by_number(42)
    assert store == Store(number=42, name="Avenida", aliases=("la avenida",))
    assert store.display == "Tienda 42 (Avenida)"
    assert catalog.store_by_number(99) is None


def test_duplicate_store_number(config_copy):
    path = config_copy / "stores.yml"
    data = load(path)
    data["stores"].append({"number": 42, "name": "Nueva", "aliases": []})
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert f"stores[{len(data['stores']) - 1}]" in message
    assert "store number 42 appears twice" in message


def test_alias_shared_by_two_stores(config_copy):
    path = config_copy / "stores.yml"
    data = load(path)
    norte = next(i for i, s in enumerate(data["stores"]) if s["number"] == 2)
    data["stores"][norte]["aliases"] = ["matriz"]  # already an alias of store 1
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert f"stores[{norte}]" in message
    assert "'matriz' is also used by store 1" in message


def test_alias_equal_to_another_store_name_after_folding(config_copy):
    path = config_copy / "stores.yml"
    data = load(path)
    pilar = next(i for i, s in enumerate(data["stores"]) if s["number"] == 50)
    data["stores"][pilar]["aliases"] = ["guemes"]  # "Güemes" is store 40
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "'guemes' is also used by store 40" in message


def test_store_number_of_the_wrong_type(config_copy):
    path = config_copy / "stores.yml"
    data = load(path)
    data["stores"][0]["number"] = "uno"
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "'number' must be int, got 'uno'" in message


def test_the_label_and_the_words_come_from_the_file(config_copy):
    path = config_copy / "stores.yml"
    data = load(path)
    data["label"] = "Sucursal {number}: {name}"
    data["keywords"] = ["tienda", "negocio"]
    dump(path, data)
    stores = load_stores(path)
    assert stores.keywords == ("tienda", "negocio")
    assert next(s for s in stores.stores if s.number == 42).display == "Sucursal 42: Avenida"
    assert stores.mention.search("negocio 42") and not stores.mention.search("sucursal 42")
    assert stores.bare.match("nro 42") and not stores.bare.match("tienda 42")


def test_the_shipped_words():
    stores = load_stores(CONFIG / "stores.yml")
    assert stores.label == "Tienda {number} ({name})"
    assert stores.keywords == ("tienda", "sucursal", "suc", "local")
    assert stores.number_words == ("la", "nro", "numero", "num", "n", "no")


@pytest.mark.parametrize("key", ["label", "keywords", "number_words"])
def test_a_missing_key(config_copy, key):
    path = config_copy / "stores.yml"
    data = load(path)
    del data[key]
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert f"missing '{key}'" in message


@pytest.mark.parametrize("key, value, expected", [
    ("label", "Tienda {numero}", "'label' may use only {number} and {name}"),
    ("label", 42, "'label' must be str"),
    ("keywords", [], "'keywords' must be a list of words"),
    ("keywords", ["tienda", False], "'keywords' must be a list of words"),  # YAML's bare no
    ("number_words", ["nro", " "], "'number_words' must be a list of words"),
])
def test_a_broken_label_or_word_list(config_copy, key, value, expected):
    path = config_copy / "stores.yml"
    data = load(path)
    data[key] = value
    dump(path, data)
    with pytest.raises(ConfigError) as info:
        load_catalog(config_copy)
    assert str(path) in str(info.value) and expected in str(info.value)
