"""The one --format option's choices. A module of its own so that the CLI can
declare the option without importing the renderers (start-up time)."""

from enum import Enum


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
