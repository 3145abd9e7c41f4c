"""Export formats, one module per dataset kind; importing this package registers them all."""

from warehouse.formats import listwise  # noqa: F401  (registers formats)
from warehouse.formats.registry import EXPORTERS, exporter, write_parquet

__all__ = ["EXPORTERS", "exporter", "write_parquet"]
