"""Custom NLU components used in config.yml's pipeline."""
