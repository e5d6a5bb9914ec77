"""Write docs/experiments.md and reports/figures/compute_vs_accuracy.png from reports/experiments.yaml.

    python scripts/experiments.py          # = fer experiments render
    python scripts/experiments.py --check  # fail if the committed page is stale
"""

import sys
from pathlib import Path

from fer_pipeline.experiments import render

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    render(root, check="--check" in sys.argv[1:])
    print("docs/experiments.md is up to date" if "--check" in sys.argv[1:] else "wrote docs/experiments.md")
