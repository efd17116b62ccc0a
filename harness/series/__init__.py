"""Series model and loading: ``load_families(source)`` and ``find_family(families, name)``."""

from harness.series.loader import find_family, load_families
from harness.series.model import Family, Message, Patch, Review, Revision

__all__ = ["Family", "Message", "Patch", "Review", "Revision", "find_family", "load_families"]
