"""Export formats, one module per dataset kind; importing this package registers them all."""

from warehouse.formats import listwise  # noqa: F401  (registers formats)
from warehouse.formats import mixed_cot  # noqa: F401  (registers formats)
from warehouse.formats import negatives  # noqa: F401  (registers formats)
from warehouse.formats import pointwise  # noqa: F401  (registers formats)
from warehouse.formats.registry import (EXPORTERS, Written, exporter, find_exporter, formats_by_kind,
                                        known_formats, write_parquet)

__all__ = ["EXPORTERS", "Written", "exporter", "find_exporter", "formats_by_kind", "known_formats",
           "write_parquet"]
