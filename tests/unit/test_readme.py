"""The README's reference sections (event catalogue, endpoints, configuration) are generated from the code."""

from pathlib import Path

from devstack import docs


def test_readme_reference_sections_are_up_to_date() -> None:
    text = Path(docs.README).read_text()
    assert docs.render(text) == text, "README.md is out of date: run `.venv/bin/python -m devstack.docs`"


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(Path(docs.README).read_text().splitlines()[:15])
    assert "make run" in head and "make test" in head
