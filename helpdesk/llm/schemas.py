"""JSON schemas of the LLM's structured answers: the code reads these fields, so the shapes
live with the code; the prompts show them to the model (`{schema}`), and every answer is
validated against them before use.

Every schema is also valid for providers' strict structured output (all properties
required, no extra properties, null expressed as a type); the limits (maxLength, minimum...)
are checked here and left out of what is sent to a provider (`provider_schema`).
"""
import copy
from typing import Any, Dict

KNOWLEDGE_ANSWER: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "covered": {"type": "boolean"},
        "answer": {"type": ["string", "null"], "maxLength": 2500},
        "sources": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 10},
    },
    "required": ["covered", "answer", "sources"],
    "additionalProperties": False,
}

SCREENSHOT: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "error_messages": {
            "type": "array",
            "items": {"type": "string", "maxLength": 500},
            "maxItems": 20,
        },
        "system": {"type": ["string", "null"], "maxLength": 200},
        "store": {"type": ["string", "null"], "maxLength": 200},
        "description": {"type": ["string", "null"], "maxLength": 1500},
    },
    "required": ["error_messages", "system", "store", "description"],
    "additionalProperties": False,
}

INTENT: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": ["string", "null"], "maxLength": 200},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "entity": {"type": "string", "maxLength": 100},
                    "value": {"type": "string", "maxLength": 300},
                },
                "required": ["entity", "value"],
                "additionalProperties": False,
            },
            "maxItems": 20,
        },
    },
    "required": ["intent", "confidence", "entities"],
    "additionalProperties": False,
}

SUBJECT: Dict[str, Any] = {
    "type": "object",
    "properties": {"subject": {"type": "string", "minLength": 3, "maxLength": 120}},
    "required": ["subject"],
    "additionalProperties": False,
}

# keywords that strict provider schemas reject or ignore; checked locally instead
_LOCAL_ONLY = {"maxLength", "minLength", "minimum", "maximum", "maxItems", "minItems", "pattern"}


def provider_schema(schema: Dict[str, Any]) -> Dict[str, Any]:
    """The schema without the limits only this side checks."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in _LOCAL_ONLY}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(copy.deepcopy(schema))
