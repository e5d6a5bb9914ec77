"""`fer experiments record`: a DVC experiment's row from its committed params and reports, in a real
git repository with the experiment's ref where `dvc exp run` puts it; and the compute plot of the record."""

import json
import shutil
import subprocess

import yaml

from fer_pipeline.experiments import RECORD, load_rows, plot, record, train_images, with_compute

from conftest import REPO


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_record_writes_the_row_of_an_experiment_with_a_command_a_shell_reruns(tmp_path):
    params = {"train": {"labels": "fer2013", "model": {"name": "bn_vgg", "bn_vgg": {"widths": [32, 64], "dense": 8}},
                        "crop_size": 48, "epochs": 22, "progressive": {"epochs": 0, "size": 32}}}
    git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")   # where the stages' reports are
    (tmp_path / RECORD).parent.mkdir(parents=True)
    (tmp_path / RECORD).write_text("[]\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "baseline")

    params["train"]["labels"] = "ferplus_soft"
    params["train"]["model"]["bn_vgg"]["widths"] = [24, 48, 96]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("train", "evaluate"):
        (tmp_path / "reports" / stage).mkdir()
    (tmp_path / "reports/train/metrics.json").write_text(json.dumps(
        {"train_images": 27845, "train_gflop_per_image": 0.5, "train_compute_tflop": 420.0,
         "train_seconds": 3000, "train_images_per_second": 250.4}))
    (tmp_path / "reports/evaluate/metrics.json").write_text(json.dumps(
        {"val_acc": 0.6, "val_fp": 0.8512, "test_acc": 0.59, "test_tta": 0.6, "fp_acc": 0.848}))
    (tmp_path / "models").mkdir()
    (tmp_path / "models/mlflow_run.json").write_text(json.dumps({"run_id": None}))
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "the experiment")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    git(tmp_path, "update-ref", "refs/exps/ab/cdef/wide", sha)
    git(tmp_path, "reset", "-q", "--hard", "HEAD^")   # the workspace is back on the baseline

    row = record(tmp_path, "wide", "wider", "level", machine="test machine")

    # the overrides a shell hands to dvc unchanged: a list's brackets quoted, or zsh (macOS's shell)
    # stops at the unmatched glob; bash's failglob does the same
    expected = ["dvc", "exp", "run", "--temp", "-n", "wide",
                "-S", "train.labels=ferplus_soft", "-S", "train.model.bn_vgg.widths=[24,48,96]"]
    echoed = subprocess.run(["bash", "-O", "failglob", "-c", "printf '%s\\n' " + row["command"]], cwd=tmp_path,
                            capture_output=True, text=True)
    assert echoed.returncode == 0 and echoed.stdout.splitlines() == expected, (row["command"], echoed.stderr)
    # val against the labels it trained on (FER+), the FER2013 figure beside it
    assert (row["val"], row["val_fer2013"], row["ferplus_test"], row["test"]) == (85.12, 60.0, 84.8, 59.0)
    assert row["commit"] == sha[:7] and row["minutes"] == 50.0 and row["machine"] == "test machine; 250 images/s"
    assert yaml.safe_load((tmp_path / RECORD).read_text()) == [row]


def test_the_compute_plot_of_the_record_is_written(tmp_path):
    import cv2

    rows, budget = with_compute(load_rows(REPO), train_images(REPO))
    plot(rows, budget, tmp_path / "plot.png")
    image = cv2.imread(str(tmp_path / "plot.png"))
    assert image is not None and image.shape[1] > image.shape[0] > 300
