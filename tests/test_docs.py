"""The README's configuration table documents every setting: a field added to
``vize.config.Settings`` without its ``VIZE_<NAME>`` row there fails this test."""

from __future__ import annotations

import re
from pathlib import Path

from vize.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_variables(markdown: str) -> set[str]:
    """The ``VIZE_*`` names in the first column of the table under ``## Configuration``."""
    section = markdown.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return {name for row in rows for name in re.findall(r"`(VIZE_[A-Z0-9_]+)`", row.split("|")[1])}


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    documented = documented_variables(README.read_text(encoding="utf-8"))
    settings = {f"VIZE_{name.upper()}" for name in Settings.model_fields}
    assert not settings - documented, "settings missing from README.md's configuration table"
    assert not documented - settings, "README.md documents settings that do not exist"


def test_the_table_parser_sees_a_missing_row() -> None:
    table = (
        "\n## Configuration\n\n| variable | default |\n| --- | --- |\n| `VIZE_A` / `VIZE_B` | x |\n"
    )
    assert documented_variables(table) == {"VIZE_A", "VIZE_B"}
    assert documented_variables(table.replace("`VIZE_B`", "")) == {"VIZE_A"}
