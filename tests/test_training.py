"""A real (tiny) training run against a temp sqlite MLflow store."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest

from fer_pipeline.data import ingest
from fer_pipeline.errors import FerError
from fer_pipeline.fsutil import load_split
from fer_pipeline.preprocess import preprocess_to
from fer_pipeline.training import train

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
    img, man, _ = ingest(fer_fixture.zip, workers=1, progress=False, votes=fer_fixture.votes_csv)
    p = tiny_params()
    summary = preprocess_to(img, man, p["preprocess"], str(d / "data"))
    (d / "preprocess").mkdir()
    (d / "preprocess/summary.json").write_text(json.dumps(summary))
    return d


@pytest.fixture(scope="module")
def trained_run(processed, tmp_path_factory, monkeypatch_module):
    from fer_pipeline.training import run_train

    work = tmp_path_factory.mktemp("run")
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    args = {k: str(work / v) for k, v in {
        "model": "model.keras", "run_info": "run.json", "reports": "train", "faces": "faces"}.items()}
    metrics = run_train(tiny_params(), data=str(processed / "data"), preprocess=str(processed / "preprocess"),
                        **args, root=str(work))
    out = {**args, "history": str(work / "train/history.json"), "preview": str(work / "faces/augmentation_preview.png")}
    return work, out, metrics


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_run_logs_params_epoch_metrics_figures_datasets_and_model(trained_run):
    work, out, metrics = trained_run
    info = json.loads(Path(out["run_info"]).read_text())
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and run.data.params["preprocess.augment.flip"] == "True"
    # Per-epoch curves, logged by mlflow.keras.MlflowCallback: step = epoch index from 0.
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1], key
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == pytest.approx(
        [r["val_accuracy"] for r in json.loads(Path(out["history"]).read_text())], abs=1e-6)
    assert {"git_commit", "git_dirty", "data_md5", "param_count", "train_seconds"} <= set(run.data.tags)
    assert int(run.data.tags["param_count"]) == metrics["params"]
    # The CPU the minutes were measured on, as the system's own tools name it.
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    assert run.data.tags["cpu_count"] == nproc
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if shutil.which("lscpu") else ""
    named = [line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")]
    assert run.data.tags["cpu_model"] not in ("", "unknown")
    if named:
        assert run.data.tags["cpu_model"] == named[0]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/training_curves.png", "figures/augmentation_preview.png"}  # layout.Train
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"fer2013-train", "fer2013-val"}
    # the model's requirements, pinned to what trained it (given, not inferred by loading it again)
    import importlib.metadata as md

    reqs = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model/requirements.txt"))
    pins = reqs.read_text().split()
    assert f"keras=={md.version('keras')}" in pins and any(p.startswith("tensorflow") for p in pins)
    assert any(p.startswith("mlflow") for p in pins), pins
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    probs = np.asarray(model.predict(np.zeros((5, 48, 48, 1), np.float32)))
    assert probs.shape == (5, 7)
    assert metrics["epochs_run"] == 2 and 0 <= metrics["best_val_accuracy"] <= 1
    history = json.loads(Path(out["history"]).read_text())
    assert [r["epoch"] for r in history] == [1, 2] and "val_accuracy" in history[0]
    # Compute and speed: FLOPs per training image of this model, and the step rate (validation
    # excluded) apart from the epoch wall time (validation included).
    macs = 48 * 48 * 8 * 9 + 24 * 24 * 16 * 9 * 8 + 16 * 16 + 16 * 7  # by hand: 2 convs, 2 dense layers
    assert metrics["train_gflop_per_image"] == round(6 * macs / 1e9, 3)
    overall = metrics["epochs_run"] * 2 * 16 / metrics["train_seconds"]  # 2 steps of 16 per epoch
    assert metrics["train_images_per_second"] > overall
    # epoch time = fit time / epochs; both are rounded to 0.1 s in the report
    assert metrics["epoch_seconds"] == pytest.approx(metrics["train_seconds"] / 2, abs=0.1)
    png = Path(out["preview"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_same_seed_twice_gives_the_same_result(processed):
    p = tiny_params()
    tr, va = load_split(processed / "data", "train"), load_split(processed / "data", "val")
    a = train(tr, va, p["train"], p["preprocess"]["augment"])
    b = train(tr, va, p["train"], p["preprocess"]["augment"])
    assert a.history["loss"] == b.history["loss"]
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def brightness_task(n: int, seed: int, shift: int = 0):
    """A learnable task: the class sets the brightness. ``shift`` relabels (class + shift) % 7."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    x = rng.normal(30 + 30 * y[:, None, None, None], 8, (n, 48, 48, 1))
    return np.clip(x, 0, 255).astype(np.uint8), (y + shift) % 7


def test_the_kept_weights_are_those_of_the_best_val_epoch():
    # Val labels are shifted by one class, so val accuracy falls as the model learns the task:
    # the best val epoch is an early one. EarlyStopping(restore_best_weights) never stops here
    # (patience 0 = off) but must hand back that epoch's weights, not the last ones.
    p = tiny_params()
    p["train"].update({"epochs": 4, "batch_size": 32, "learning_rate": 0.01})
    p["train"]["model"]["bn_vgg"]["dropout"] = 0.0
    va = brightness_task(70, 1, shift=1)
    r = train(brightness_task(448, 0), va, p["train"], p["preprocess"]["augment"])
    history = r.history["val_accuracy"]
    assert r.best_val_accuracy == max(history) and r.best_epoch == history.index(max(history)) + 1
    assert r.best_epoch < 4 and history[-1] < max(history)   # the task does what it is meant to
    kept = float(np.mean(r.model.predict(va[0].astype("float32"), verbose=0).argmax(1) == va[1]))
    assert kept == pytest.approx(max(history), abs=1e-6)


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


def test_early_stopping_waits_for_the_weight_average_to_settle():
    # An EMA run's first epochs score one class on val (the average is still mostly the untrained
    # model): with patience 2 those flat epochs must not stop it. Keras's own EarlyStopping, fed
    # the epochs a run of 440 steps with EMA 0.999 sees; without EMA the same patience stops.
    import keras

    from fer_pipeline.training import callbacks, ema_settling_epochs

    assert ema_settling_epochs(0.999, 440) == 6 and ema_settling_epochs(0.0, 440) == 0
    flat_then_learning = [0.18] * 5 + [0.55, 0.6, 0.62, 0.63, 0.64]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False
    stopped = {}
    for ema in (0.999, 0.0):
        _, best, _ = callbacks(patience=2, epochs=10, ema=ema, steps=440, mlflow_logging=False, quiet=True)
        best.set_model(model)
        best.on_train_begin()
        for epoch, acc in enumerate(flat_then_learning):
            best.on_epoch_end(epoch, {"val_accuracy": acc})
            if model.stop_training:
                break
        stopped[ema], model.stop_training = best.stopped_epoch, False
    assert stopped == {0.999: 0, 0.0: 2}
    # never later than the last epoch: a short EMA run still keeps its best epoch
    _, best, _ = callbacks(patience=0, epochs=3, ema=0.999, steps=440, mlflow_logging=False, quiet=True)
    assert best.start_from_epoch == 2


def test_mirrored_strategy_trains_like_no_strategy():
    # A learnable task (the class sets the brightness): under MirroredStrategy the model's variables
    # are mirrored (the strategy is really in use) and it learns as a run without a strategy does.
    # (Not bit-identical: the distributed dataset and replica context change the order of work.)
    p = tiny_params()
    p["train"].update({"epochs": 3, "batch_size": 32, "learning_rate": 0.01})
    p["train"]["model"]["bn_vgg"]["dropout"] = 0.0
    tr, va = brightness_task(448, 0), brightness_task(70, 1)
    plain = train(tr, va, p["train"], p["preprocess"]["augment"])
    p["train"]["distribute"] = "mirrored"
    mirrored = train(tr, va, p["train"], p["preprocess"]["augment"])
    assert type(mirrored.model.trainable_variables[0].value).__name__ == "MirroredVariable"
    assert type(plain.model.trainable_variables[0].value).__name__ != "MirroredVariable"
    acc_plain, acc_mirrored = plain.history["accuracy"], mirrored.history["accuracy"]
    assert acc_plain[-1] > 0.5 and acc_mirrored[-1] > 0.5            # chance is 1/7
    assert abs(acc_mirrored[-1] - acc_plain[-1]) < 0.1
    np.testing.assert_allclose(mirrored.history["loss"], plain.history["loss"], rtol=0.05)


def test_progressive_training_runs_its_first_epochs_small_and_counts_their_flops_at_that_size(processed,
                                                                                            monkeypatch):
    import fer_pipeline.inputs as inputs
    from fer_pipeline.models import training_flops_at

    made = []
    real = inputs.make_dataset
    monkeypatch.setattr(inputs, "make_dataset", lambda *a, **k: made.append((a, k)) or real(*a, **k))
    p = tiny_params()
    p["train"]["progressive"] = {"epochs": 1, "size": 24}
    tr, va = load_split(processed / "data", "train"), load_split(processed / "data", "val")
    r = train(tr, va, p["train"], p["preprocess"]["augment"])
    per_epoch = -(-len(tr[0]) // 16) * 16                        # steps x batch
    assert made[0][0][-1] == (per_epoch // 16, 24)                # the training set's first epoch is small
    kw = TINY_MODEL["bn_vgg"]
    full, small = training_flops_at("bn_vgg", 48, **kw), training_flops_at("bn_vgg", 24, **kw)
    assert r.flops_per_image == full and r.compute_flops == per_epoch * (full + small)
    assert len(r.history["loss"]) == 2 and r.model.input_shape == (None, None, None, 1)
    assert r.model.predict(tr[0][:3].astype("float32"), verbose=0).shape == (3, 7)  # whole 48x48 faces


def test_distribute_choices_belong_to_their_backend():
    # This process runs Keras on TensorFlow: the JAX choices stop with one line saying what to set.
    p = tiny_params()
    for choice in ("data_parallel", "multi_process"):
        p["train"]["distribute"] = choice
        with pytest.raises(FerError, match=f"train.distribute {choice} runs on Keras's JAX backend: "
                                           "set KERAS_BACKEND=jax"):
            train(brightness_task(32, 0), brightness_task(14, 1), p["train"], p["preprocess"]["augment"])


def test_a_crash_marks_the_run_failed_and_the_next_run_is_new(processed, tmp_path, monkeypatch):
    from fer_pipeline.training import run_train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    p = tiny_params()
    p["train"]["optimizer"] = "bogus"
    out = {k: str(tmp_path / v) for k, v in {
        "model": "model.keras", "run_info": "run.json", "reports": "train", "faces": "faces"}.items()}
    out["preprocess"] = str(processed / "preprocess")
    with pytest.raises(ValueError, match="unknown optimizer"):
        run_train(p, data=str(processed / "data"), **out, root=str(tmp_path))
    assert not (tmp_path / "model.keras").exists() and not (tmp_path / "run.json").exists()
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("test")
    assert [r.info.status for r in client.search_runs([exp.experiment_id])] == ["FAILED"]
    p["train"]["optimizer"] = "adam"
    p["train"]["epochs"] = 1
    run_train(p, data=str(processed / "data"), **out, root=str(tmp_path))
    statuses = sorted(r.info.status for r in client.search_runs([exp.experiment_id]))
    assert statuses == ["FAILED", "FINISHED"]
