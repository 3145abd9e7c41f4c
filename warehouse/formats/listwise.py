"""Exports of listwise rows."""

from warehouse.formats.registry import parquet_exporter

parquet_exporter("listwise")
