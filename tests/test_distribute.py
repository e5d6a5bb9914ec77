"""The train stage on Keras's JAX backend, in real processes: without TensorFlow, on two virtual
devices, and as two processes on 127.0.0.1 (one of them killed in one test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from conftest import REPO
from helpers import free_port, stage_cmd

pytestmark = pytest.mark.slow
TIMEOUT = 300      # seconds any one process may take here (JAX start-up is 10-20 s of it)
BLOCK_TF = '''import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is blocked in this process (test)")
sys.meta_path.insert(0, _NoTensorFlow())
'''


def tiny_train_params(**train) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"].update({"epochs": 3, "batch_size": 16, "warmup_epochs": 0, "labels": "fer2013",   # no votes here
                         "model": {**raw["train"]["model"], "name": "bn_vgg",
                                   "bn_vgg": {"widths": [8, 16], "convs_per_stage": 1, "dropout": 0.1, "dense": 16}},
                         **train})
    raw["preprocess"]["augment"].update({"erasing_prob": 0.5, "mixup_alpha": 0.2})
    raw["tracking"]["experiment"] = "test"
    return raw


def workdir(root: Path, params: dict, n_train: int = 96, n_val: int = 40) -> Path:
    """A directory laid out like the repository for the train stage: params.yaml, the preprocess
    outputs it reads (faces whose brightness pattern depends on the class), an MLflow store."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        y = rng.integers(0, 7, n)
        x = rng.integers(0, 60, (n, 48, 48, 1)).astype(np.uint8)
        for k in range(7):  # class k: a bright band at row 6k
            x[y == k, 6 * k:6 * k + 6] += 150
        (root / "data/processed").mkdir(parents=True, exist_ok=True)
        np.savez(root / f"data/processed/{split}.npz", x=x, y=y, row_id=np.arange(n),
                 votes=np.zeros((n, 10), np.int16))
    (root / "reports/preprocess").mkdir(parents=True, exist_ok=True)
    weights = {"class_weights": {str(k): 1.0 for k in range(7)}}
    (root / "reports/preprocess/summary.json").write_text(json.dumps(weights))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def env_for(root: Path, backend: str, block_tf: bool = False, **extra) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "OMP_NUM_THREADS": "1",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", **extra}
    if block_tf:
        (root / "sitecustomize").mkdir(exist_ok=True)
        (root / "sitecustomize/sitecustomize.py").write_text(BLOCK_TF)
        env["PYTHONPATH"] = os.pathsep.join([str(root / "sitecustomize"), env.get("PYTHONPATH", "")])
    return env


def start(root: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(stage_cmd("train"), cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"train stage still running after {TIMEOUT} s:\n{out[-3000:]}")
    return out


def run_stage(root: Path, env: dict) -> str:
    proc = start(root, env)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    return out


def losses(root: Path) -> np.ndarray:
    return np.array([r["loss"] for r in json.loads((root / "reports/train/history.json").read_text())])


def runs(root: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("test")
    return [] if exp is None else mlflow.search_runs([exp.experiment_id], output_format="list")


def digests(out: str) -> list[str]:
    return [line.split("weights sha256 ")[1][:16] for line in out.splitlines() if "weights sha256 " in line]


@pytest.fixture(scope="module")
def single_jax(tmp_path_factory):
    """The reference: one process, one device, JAX, TensorFlow blocked."""
    root = workdir(tmp_path_factory.mktemp("jax1"), tiny_train_params())
    out = run_stage(root, env_for(root, "jax", block_tf=True))
    return root, out


def test_jax_stage_runs_without_tensorflow_and_its_model_serves_on_tensorflow(single_jax, tmp_path):
    import keras

    root, out = single_jax
    assert (root / "models/model.keras").exists(), out[-3000:]
    assert "on jax" in out
    # The JAX process's own predictions on val, TensorFlow still blocked...
    script = ("import sys, numpy as np, keras\n"
              "x = np.load('data/processed/val.npz')['x'].astype('float32')\n"
              "np.save(sys.argv[1], keras.models.load_model('models/model.keras').predict(x, verbose=0).argmax(1))\n")
    env = env_for(root, "jax", block_tf=True)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "jax.npy")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    # ...equal the classes the same file gives under TensorFlow (this process).
    assert keras.backend.backend() == "tensorflow"
    x = np.load(root / "data/processed/val.npz")["x"].astype("float32")
    tf_classes = keras.models.load_model(root / "models/model.keras").predict(x, verbose=0).argmax(1)
    np.testing.assert_array_equal(np.load(tmp_path / "jax.npy"), tf_classes)


def test_jax_and_tensorflow_runs_log_the_same_mlflow_keys(single_jax, tmp_path):
    jax_root, _ = single_jax
    tf_root = workdir(tmp_path, tiny_train_params())
    run_stage(tf_root, env_for(tf_root, "tensorflow"))
    (jax_run,), (tf_run,) = runs(jax_root), runs(tf_root)
    assert jax_run.info.status == tf_run.info.status == "FINISHED"
    assert set(jax_run.data.metrics) == set(tf_run.data.metrics) and "val_accuracy" in jax_run.data.metrics
    assert set(jax_run.data.params) == set(tf_run.data.params)
    assert (jax_run.data.tags["keras_backend"], tf_run.data.tags["keras_backend"]) == ("jax", "tensorflow")
    assert json.loads((jax_root / "reports/train/metrics.json").read_text()).keys() == \
        json.loads((tf_root / "reports/train/metrics.json").read_text()).keys()


def test_two_virtual_devices_train_like_one(single_jax, tmp_path):
    root = workdir(tmp_path, tiny_train_params(distribute="data_parallel"))
    env = env_for(root, "jax", XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false")
    out = run_stage(root, env)
    assert "2 devices in 1 process(es)" in out, out[-2000:]
    np.testing.assert_allclose(losses(root), losses(single_jax[0]), rtol=1e-4)


def cluster_env(root: Path, port: int, rank: int) -> dict:
    return env_for(root, "jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
                   KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(rank))


def test_multi_process_two_processes_train_like_one(single_jax, tmp_path):
    """Two processes on loopback, each with its own copy of the inputs (as on two machines)."""
    port = free_port()
    roots = [workdir(tmp_path / f"p{r}", tiny_train_params(distribute="multi_process")) for r in (0, 1)]
    for r in roots:
        r.mkdir(exist_ok=True)
    procs = [start(roots[r], cluster_env(roots[r], port, r)) for r in (0, 1)]
    try:
        outs = [finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(o[-2000:] for o in outs)
    # Both ended with the same weights; process 0 alone wrote outputs and the MLflow run.
    d0, d1 = digests(outs[0]), digests(outs[1])
    assert len(d0) == len(d1) == 1 and d0 == d1, outs
    assert "2 devices in 2 process(es)" in outs[0]
    assert (roots[0] / "models/model.keras").exists() and not (roots[1] / "models").exists()
    assert not (roots[1] / "reports/train/history.json").exists()
    assert len(runs(roots[0])) == 1 and runs(roots[1]) == []
    np.testing.assert_allclose(losses(roots[0]), losses(single_jax[0]), rtol=1e-4)


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_multi_process_a_lost_process_ends_the_run_failed_with_one_line(tmp_path, how):
    """Killed (SIGKILL: its connections reset) or frozen (SIGSTOP: nothing resets, as when a machine
    hangs or is unplugged): process 0 ends within the timeout with one line."""
    port = free_port()
    params = tiny_train_params(distribute="multi_process", epochs=40, distribute_timeout_s=10)
    roots = [workdir(tmp_path / f"p{r}", params, n_train=160) for r in (0, 1)]
    procs = [start(roots[r], cluster_env(roots[r], port, r)) for r in (0, 1)]
    try:
        lines = []
        for line in procs[0].stdout:  # the first epoch's line: training is under way
            lines.append(line)
            if line.startswith("epoch   1/"):
                os.killpg(procs[1].pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
                break
        killed_at = time.time()
        rest = finish(procs[0])
        took = time.time() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    out = "".join(lines) + rest
    assert procs[0].returncode == 1, out[-3000:]           # its own exit, not JAX's abort (SIGABRT)...
    assert "Check failure stack trace" not in out, out[-3000:]   # ...after waiting for the lost peer
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "process 0 of 2" in errors[0] and f"127.0.0.1:{port}" in errors[0], out[-3000:]
    print(f"\n{errors[0]}\n{took:.1f} s after SIG{'KILL' if how == 'killed' else 'STOP'}")
    assert took < 10 + 60, took
    (run,) = runs(roots[0])
    assert run.info.status == "FAILED"
    assert not (roots[0] / "models/model.keras").exists()
    assert not list(roots[0].glob("models/*.keras*"))     # no temporary file left either


def test_multi_process_an_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path):
    # Process 1 of 2, and nobody listens at the coordinator's address: no hang, no JAX stack trace.
    root = workdir(tmp_path, tiny_train_params(distribute="multi_process", distribute_timeout_s=5))
    port = free_port()
    t0 = time.time()
    proc = start(root, {**cluster_env(root, port, 1)})
    out = finish(proc)
    took = time.time() - t0
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert proc.returncode == 1 and len(errors) == 1, out[-3000:]
    assert f"process 1 of 2 (coordinator 127.0.0.1:{port})" in errors[0] and "did not all meet" in errors[0]
    assert "Check failure stack trace" not in out and took < 5 + 60, took
    assert not (root / "models").exists() and runs(root) == []
