"""A real (tiny) training run against a temp sqlite MLflow store."""

import json
import os

import mlflow
import numpy as np
import pytest

from fer_pipeline.data import ingest
from fer_pipeline.fsutil import load_split
from fer_pipeline.params import FerError, validate_params
from fer_pipeline.preprocess import run_preprocess
from fer_pipeline.training import make_dataset, train

from conftest import REPO
from helpers import repo_params

pytestmark = pytest.mark.slow
TINY_MODEL = {"name": "bn_vgg", "bn_vgg": {"widths": [8, 16], "convs_per_stage": 1, "dropout": 0.1, "dense": 16}}


def tiny_params() -> dict:
    p = repo_params()
    p["train"].update({"epochs": 2, "batch_size": 16, "deterministic": True, "model": TINY_MODEL})
    p["tracking"]["experiment"] = "test"
    return p


@pytest.fixture(scope="module")
def processed(fer_fixture, tmp_path_factory):
    d = tmp_path_factory.mktemp("processed")
    img, man, _ = ingest(fer_fixture.zip, workers=1, progress=False)
    p = tiny_params()
    summary = run_preprocess(img, man, p["preprocess"], str(d / "data"))
    (d / "preprocess.json").write_text(json.dumps(summary))
    return d


@pytest.fixture(scope="module")
def trained_run(processed, tmp_path_factory, monkeypatch_module):
    from fer_pipeline.training import run_train

    work = tmp_path_factory.mktemp("run")
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    out = {k: str(work / v) for k, v in {
        "model": "model.keras", "run_info": "run.json", "metrics": "train_metrics.json",
        "history": "history.json", "curves": "curves.png", "preview": "preview.png"}.items()}
    out["preprocess_report"] = str(processed / "preprocess.json")
    metrics = run_train(str(processed / "data"), tiny_params(), out, root=str(work))
    return work, out, metrics


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_run_logs_params_epoch_metrics_figures_datasets_and_model(trained_run):
    work, out, metrics = trained_run
    info = json.loads(open(out["run_info"]).read())
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and run.data.params["preprocess.augment.flip"] == "True"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert {"git_commit", "git_dirty", "data_md5", "param_count", "train_seconds"} <= set(run.data.tags)
    assert int(run.data.tags["param_count"]) == metrics["params"]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/curves.png", "figures/preview.png"}  # the files given in out
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"fer2013-train", "fer2013-val"}
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    probs = np.asarray(model.predict(np.zeros((5, 48, 48, 1), np.float32)))
    assert probs.shape == (5, 7)
    assert metrics["epochs_run"] == 2 and 0 <= metrics["best_val_accuracy"] <= 1
    history = json.loads(open(out["history"]).read())
    assert [r["epoch"] for r in history] == [1, 2] and "val_accuracy" in history[0]
    # Compute and speed: FLOPs per training image of this model, and the step rate (validation
    # excluded) apart from the epoch wall time (validation included).
    macs = 48 * 48 * 8 * 9 + 24 * 24 * 16 * 9 * 8 + 16 * 16 + 16 * 7  # by hand: 2 convs, 2 dense layers
    assert metrics["train_gflop_per_image"] == round(6 * macs / 1e9, 3)
    overall = metrics["epochs_run"] * 2 * 16 / metrics["train_seconds"]  # 2 steps of 16 per epoch
    assert metrics["train_images_per_second"] > overall
    assert metrics["epoch_seconds"] == pytest.approx(metrics["train_seconds"] / 2, rel=0.05)
    png = open(out["preview"], "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_same_seed_twice_gives_the_same_result(processed):
    p = tiny_params()
    tr, va = load_split(processed / "data", "train"), load_split(processed / "data", "val")
    a = train(tr, va, p["train"], p["preprocess"]["augment"])
    b = train(tr, va, p["train"], p["preprocess"]["augment"])
    assert a.history["loss"] == b.history["loss"]
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_ema_weights_are_what_the_model_keeps_and_crops_shrink_the_flops(processed):
    # Same seed, deterministic: the raw weight trajectory is the same with and without EMA, so the
    # kept weights differ at all only because the EMA weights are kept (without it: identical).
    p = tiny_params()
    tr, va = load_split(processed / "data", "train"), load_split(processed / "data", "val")
    raw = train(tr, va, p["train"], p["preprocess"]["augment"])
    p["train"]["ema"] = 0.99
    ema = train(tr, va, p["train"], p["preprocess"]["augment"])
    moved_raw = sum(float(np.abs(w).sum()) for w in raw.model.trainable_weights)
    gap = sum(float(np.abs(a - b).sum()) for a, b in zip(raw.model.get_weights(), ema.model.get_weights()))
    assert gap > 1e-3 * moved_raw
    p["train"].update({"ema": 0.0, "crop_size": 40, "epochs": 1})
    crop = train(tr, va, p["train"], p["preprocess"]["augment"])
    assert crop.flops_per_image < 0.75 * raw.flops_per_image
    assert crop.model.predict(tr[0][:3].astype("float32"), verbose=0).shape == (3, 7)  # whole 48x48 faces


def test_mirrored_strategy_trains_on_one_device(processed):
    p = tiny_params()
    p["train"].update({"distribute": "mirrored", "epochs": 1})
    r = train(load_split(processed / "data", "train"), load_split(processed / "data", "val"),
              p["train"], p["preprocess"]["augment"])
    assert len(r.history["loss"]) == 1 and np.isfinite(r.history["loss"][0])


def test_training_dataset_is_augmented_and_val_is_not():
    x = np.random.default_rng(0).integers(0, 255, (10, 48, 48, 1), dtype=np.uint8)
    y = np.arange(10) % 7
    from fer_pipeline.augment import AugmentConfig

    val = next(iter(make_dataset(x, y, 10, training=False)))
    np.testing.assert_array_equal(val[0].numpy(), x.astype(np.float32))
    assert val[1].shape == (10, 7)
    aug = AugmentConfig(flip=True, rotation=0.1, translation=0.0, zoom=0.0, erasing_prob=0.0,
                        erasing_max_area=0.2, mixup_alpha=0.0)
    tr = next(iter(make_dataset(x, y, 10, training=True, aug=aug)))
    assert tr[0].dtype.name == "float32" and tr[0].shape == (10, 48, 48, 1)
    assert not np.array_equal(np.sort(tr[0].numpy().ravel()), np.sort(x.astype(np.float32).ravel()))


def test_gpu_profile_overrides_nested_keys():
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    p = raw["train"]
    cpu = validate_params(raw)["train"]
    gpu = validate_params({**raw, "train": {**p, "profile": "gpu"}})["train"]
    assert cpu["epochs"] == p["epochs"] and "gpu_overrides" not in cpu
    assert gpu["epochs"] == p["gpu_overrides"]["epochs"]
    assert gpu["model"]["name"] == p["model"]["name"]  # untouched keys survive the merge
    assert gpu["model"]["bn_vgg"]["widths"] == p["gpu_overrides"]["model"]["bn_vgg"]["widths"]
    bad = {**raw, "train": {**p, "gpu_overrides": {**p["gpu_overrides"], "epoch": 5}}}
    with pytest.raises(FerError, match="train.gpu_overrides.epoch: unknown key; did you mean train.gpu_overrides.epochs"):
        validate_params(bad)


def test_a_crash_marks_the_run_failed_and_the_next_run_is_new(processed, tmp_path, monkeypatch):
    from fer_pipeline.training import run_train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    p = tiny_params()
    p["train"]["optimizer"] = "bogus"
    out = {k: str(tmp_path / v) for k, v in {
        "model": "model.keras", "run_info": "run.json", "metrics": "m.json", "history": "h.json",
        "curves": "c.png", "preview": "p.png"}.items()}
    out["preprocess_report"] = str(processed / "preprocess.json")
    with pytest.raises(ValueError, match="unknown optimizer"):
        run_train(str(processed / "data"), p, out, root=str(tmp_path))
    assert not (tmp_path / "model.keras").exists() and not (tmp_path / "run.json").exists()
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("test")
    assert [r.info.status for r in client.search_runs([exp.experiment_id])] == ["FAILED"]
    p["train"]["optimizer"] = "adam"
    p["train"]["epochs"] = 1
    run_train(str(processed / "data"), p, out, root=str(tmp_path))
    statuses = sorted(r.info.status for r in client.search_runs([exp.experiment_id]))
    assert statuses == ["FAILED", "FINISHED"]
