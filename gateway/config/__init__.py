"""Settings (frozen dataclasses, one per config section) and `load(text, environ)`."""

from gateway.config import sections
from gateway.config.loader import digest, key_from_fields, load, load_file
from gateway.config.schema import SECRET_FIELDS, key_fields_schema
from gateway.config.sections import *  # noqa: F403 (every section, as sections.__all__ lists)

__all__ = [
    "SECRET_FIELDS",
    "digest",
    "key_fields_schema",
    "key_from_fields",
    "load",
    "load_file",
]
__all__ += sections.__all__
