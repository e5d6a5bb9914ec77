"""The front door and the manual: README short, every relative link resolves, the generated
experiments page is current, and the figures the README quotes come from files in the repo."""

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(md: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in md.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_the_experiments_page_is_generated_from_the_record_and_current():
    from fer_pipeline.experiments import render

    render(REPO, check=True)  # raises FerError naming the command when stale


def test_a_stale_experiments_page_is_detected(tmp_path):
    import shutil

    from fer_pipeline.errors import FerError
    from fer_pipeline.experiments import render

    for rel in ("reports/experiments.yaml", "reports/preprocess/summary.json", "docs/experiments.md", "dvc.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    rows = yaml.safe_load((tmp_path / "reports/experiments.yaml").read_text())
    rows[0]["val"] = 12.34
    (tmp_path / "reports/experiments.yaml").write_text(yaml.safe_dump(rows))
    with pytest.raises(FerError, match="docs/experiments.md is stale: run `fer experiments render`"):
        render(tmp_path, check=True)


def test_the_peer_figures_the_readme_quotes_are_those_of_reports_baselines_yaml():
    readme = (REPO / "README.md").read_text()
    for row in yaml.safe_load((REPO / "reports/baselines.yaml").read_text()):
        figure = row["privatetest"] if row["privatetest"] is not None else row["combined"]
        assert f"{100 * figure:.1f}%" in readme, row["model"]
