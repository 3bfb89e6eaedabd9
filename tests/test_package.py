"""The version is written once (``mistnet.__version__``) and repeated consistently: ``mist
--version``, CITATION.cff and the changelog (the wheel's metadata: tests/test_wheel.py); the
licence files are there."""

import re
from pathlib import Path

import pytest
from cli_helpers import mist

import mistnet

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_everywhere(capsys):
    version = mistnet.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    with pytest.raises(SystemExit) as exc:
        mist(capsys, "--version")
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"mistnet {version}"
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^version: (\S+)$", citation, re.M).group(1) == version
    assert f"\n## {version}" in (ROOT / "CHANGELOG.md").read_text()


def test_licence_files_and_citation_of_the_paper():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    data_licence = (ROOT / "src/mistnet/data/MNIST_5K_LICENSE.md").read_text()
    assert "CC BY-SA 3.0" in data_licence and "LeCun" in data_licence
    citation = (ROOT / "CITATION.cff").read_text()
    for name in ("Angles", "Jin", "Kornblith", "Tagliasacchi", "Yi"):
        assert f"family-names: {name}\n" in citation
    assert "preferred-citation:" in citation and "year: 2021" in citation
