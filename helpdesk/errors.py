"""Errors shared across the project."""


class ConfigError(Exception):
    """A designer-edited YAML file is missing or does not hold what it should.

    The message names the file and the field so it can be fixed without reading code.
    """
