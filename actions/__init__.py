"""Custom actions served by the rasa-sdk action server (`rasa run actions`)."""
