"""Keeps one entity per mention when two extractors find the same thing.

DIET learns store mentions ("la 27") and the regex/lookup extractor finds the explicit ones
("tienda 42"): the same span often comes twice. Duplicates would turn single-valued slots
into guesses and make `rasa test` count a correct prediction as wrong. For overlapping
entities of one type, the entity of the first extractor in `prefer` is kept (the
deterministic one by default), otherwise the longer one.
"""
from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES
from rasa.shared.nlu.training_data.message import Message


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False
)
class EntityDeduplicator(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"prefer": ["RegexEntityExtractor"]}

    def __init__(self, config: Dict[Text, Any]) -> None:
        self.prefer: List[Text] = list(config.get("prefer") or [])

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "EntityDeduplicator":
        return cls(config)

    def _rank(self, entity: Dict[Text, Any]) -> tuple:
        extractor = entity.get("extractor")
        preferred = self.prefer.index(extractor) if extractor in self.prefer else len(self.prefer)
        length = int(entity.get("end", 0)) - int(entity.get("start", 0))
        return (preferred, -length)

    def deduplicate(self, entities: List[Dict[Text, Any]]) -> List[Dict[Text, Any]]:
        kept: List[Dict[Text, Any]] = []
        for entity in sorted(entities, key=self._rank):
            overlaps = any(
                other.get("entity") == entity.get("entity")
                and other.get("start", -1) < entity.get("end", -1)
                and entity.get("start", -1) < other.get("end", -1)
                for other in kept
            )
            if not overlaps:
                kept.append(entity)
        return sorted(kept, key=lambda e: (e.get("start", 0), e.get("end", 0)))

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            entities = message.get(ENTITIES) or []
            if len(entities) > 1:
                message.set(ENTITIES, self.deduplicate(entities), add_to_output=True)
        return messages
