"""The experiments table and the compute-vs-accuracy plot, from reports/experiments.yaml.

    python scripts/experiments.py        # prints the Markdown table; writes the figure

Training compute of a row = FLOPs per training image of its model at its crop size (counted from
the layers by fer_pipeline.models) x 28,006 training images x epochs: a budget that does not
depend on the machine, unlike minutes. A row with ``progressive: {epochs, size}`` counts its first
epochs at that size.
"""

from pathlib import Path

import yaml

from fer_pipeline.models import training_flops_at

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 28006


def main() -> None:
    rows = yaml.safe_load((ROOT / "reports/experiments.yaml").read_text())
    budget = None
    for r in rows:
        model = dict(r["model"])
        name = model.pop("name")
        r["gflop"] = training_flops_at(name, r["crop_size"], **model) / 1e9
        small = r.get("progressive", {"epochs": 0})
        small_gflop = training_flops_at(name, small["size"], **model) / 1e9 if small["epochs"] else 0.0
        r["tflop"] = TRAIN_IMAGES * (r["gflop"] * (r["epochs"] - small["epochs"]) + small_gflop * small["epochs"]) / 1e3
        if r["name"] == "dropout-0.2":
            budget = r["tflop"]
    print("| experiment | command | GFLOP/img | epochs | compute (x budget) | minutes (machine) | val | test "
          "| TTA test |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pct = lambda v: "-" if v is None else (f"{v}%" if isinstance(v, (int, float)) else str(v))  # noqa: E731
        print(f"| `{r['name']}`: {r['what']} | `{r['command']}` | {r['gflop']:.3f} | {r['epochs']} | "
              f"{r['tflop']:.0f} TFLOP ({r['tflop'] / budget:.2f}x) | {r['minutes']} ({r['machine']}) | "
              f"{pct(r['val'])} | {pct(r['test'])} | {pct(r['tta'])} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    points: dict[tuple, list[str]] = {}  # runs with the same compute and val share one label
    for r in rows:
        ax.scatter(r["tflop"], r["val"], color="tab:blue")
        if r["test"] is not None:
            ax.scatter(r["tflop"], r["test"], color="tab:orange", marker="s")
        points.setdefault((round(r["tflop"]), r["val"]), []).append(r["name"])
    # Most runs sit at the budget: their labels go in a column right of it, where no other run can
    # be, in val order, joined to their points by thin lines; the others are labelled beside the point.
    near = sorted((p for p in points.items() if p[0][0] > 0.95 * budget), key=lambda p: p[0][1])
    others = [p for p in points.items() if p not in near]
    step = 0.32  # accuracy points between two labels of the column
    mid = sum(y for (_, y), _ in near) / max(len(near), 1)
    for k, ((x, y), names) in enumerate(near):
        ax.annotate(" = ".join(names), (x, y), xytext=(1.08 * budget, mid + step * (k - (len(near) - 1) / 2)),
                    fontsize=8, ha="left", va="center",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "gray", "shrinkB": 2})
    for (x, y), names in others:
        ax.annotate(" = ".join(names), (x, y), textcoords="offset points", fontsize=8, xytext=(-8, 4), ha="right")
    ax.axvline(budget, color="gray", ls=":", label="budget (today's default)")
    ax.axhline(70, color="tab:red", ls="--", lw=1, label="goal: 70% test")
    ax.scatter([], [], color="tab:blue", label="val (decides)")
    ax.scatter([], [], color="tab:orange", marker="s", label="test (reported)")
    ax.set_xlabel("training compute, TFLOP (FLOPs/image x images x epochs)")
    ax.set_ylabel("accuracy, %")
    ax.set_title("FER2013 experiments: accuracy against training compute")
    ax.grid(alpha=0.3)
    ax.set_xlim(0, 1.6 * budget)
    ax.legend(fontsize=8, loc="upper left")
    out = ROOT / "reports/figures/compute_vs_accuracy.png"
    fig.savefig(out, dpi=90, bbox_inches="tight")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
