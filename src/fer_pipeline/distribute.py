"""Where training runs (``train.distribute``), on either Keras backend.

- ``none``: the default device.
- ``mirrored`` (TensorFlow): ``tf.distribute.MirroredStrategy`` over the local devices.
- ``data_parallel`` (JAX): ``keras.distribution.DataParallel`` over the local devices (GPUs).
- ``multi_process`` (JAX): ``DataParallel`` over every device of every process. The processes
  meet through the variables Keras reads (``KERAS_DISTRIBUTION_JOB_ADDRESSES``: the coordinator's
  host:port, ``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``), which a
  launcher (SLURM, Kubernetes, mpirun or a shell) sets. TensorFlow's multi-worker strategy is not
  offered: Keras 3 fails under it (keras-team/keras#20585).

Failures end a run of several processes within ``train.distribute_timeout_s``, with one line that
names the process and the coordinator, never a hang:
- a peer that dies (its connections reset): the next collective fails; ``lost_peers_as_errors``
  makes it ``PeerLost``, whose line ends the process at once (``stage.one_line_errors``).
- a peer that stops answering (a frozen or unplugged machine), or a coordinator that cannot be
  reached at the start: JAX would abort the process with a stack trace after its own timeouts
  (and leave the MLflow run RUNNING), so a ``Watchdog`` ends it first: nothing moved for the
  timeout, the MLflow run is marked FAILED, one line, exit status 1. JAX's own timeouts are longer
  (start-up 2x, heartbeats 4x: a heartbeat is missed up to half JAX's timeout after the last one
  sent, so 2x raced the watchdog in a test), a backstop. No model file exists before
  training ends (``fsutil.atomic_path``).
``jax.distributed.initialize`` is called here rather than through ``keras.distribution.initialize``
because Keras passes no timeouts.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import keras

from .errors import FerError, PeerLost

ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass
class Placement:
    name: str
    rank: int = 0               # this process's index; 0 writes the outputs and the MLflow run
    processes: int = 1
    devices: int = 1            # devices a global batch is split over, all processes together
    address: str = ""           # the coordinator, for messages
    timeout_s: int = 0
    strategy: object = field(default=None, repr=False)   # TensorFlow's, or None

    @property
    def chief(self) -> bool:
        return self.rank == 0

    def scope(self):
        """Where the model and its optimizer are built."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def watchdog(self, on_fire: Callable[[], None] | None = None):
        """Several processes: a ``Watchdog`` over training (its ``Heartbeat`` goes to ``fit``);
        else nothing."""
        if self.processes == 1:
            return contextlib.nullcontext(None)
        return Watchdog(self.timeout_s, f"{self.who()}: training stopped, another process stopped "
                        "answering", on_fire)

    def who(self) -> str:
        return f"process {self.rank} of {self.processes} (coordinator {self.address})"

    @contextlib.contextmanager
    def lost_peers_as_errors(self) -> Iterator[None]:
        """Several processes: a failed collective (a peer died, the coordinator went away) becomes
        one line that names this process and the coordinator."""
        if self.processes == 1:
            yield
            return
        try:
            yield
        except FerError:
            raise
        except Exception as exc:  # jax raises XlaRuntimeError / JaxRuntimeError; names vary by version
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise PeerLost(f"{self.who()}: training stopped, another process failed or cannot be "
                           f"reached ({first})") from exc


class Watchdog:
    """Ends this process (one line on stderr, exit status 1) when ``beat`` has not been called for
    ``seconds``; ``on_fire`` runs first (marks the MLflow run FAILED). A daemon thread, so it works
    while the main thread is blocked inside a collective or JAX's start-up."""

    def __init__(self, seconds: float, message: str, on_fire: Callable[[], None] | None = None):
        self.seconds, self.message, self.on_fire = seconds, message, on_fire
        self.last, self._stop = time.monotonic(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="fer-watchdog")

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def beat(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.seconds / 10)):
            if time.monotonic() - self.last > self.seconds:
                with contextlib.suppress(Exception):
                    if self.on_fire:
                        self.on_fire()
                print(f"error: {self.message} (nothing moved for {self.seconds:.0f} s)", file=sys.stderr, flush=True)
                os._exit(1)


class Heartbeat(keras.callbacks.Callback):
    """Beats a ``Watchdog`` after every training and validation batch."""

    def __init__(self, watchdog: Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def on_train_batch_end(self, batch, logs=None):
        self.watchdog.beat()

    def on_test_batch_end(self, batch, logs=None):
        self.watchdog.beat()


def _env_cluster() -> tuple[str, int, int]:
    missing = [k for k in ENV if not os.environ.get(k)]
    if missing:
        raise FerError("train.distribute multi_process: set " + ", ".join(missing)
                       + " in every process (docs/distributed.md)")
    try:
        n, rank = int(os.environ[ENV[1]]), int(os.environ[ENV[2]])
    except ValueError as exc:
        raise FerError(f"{ENV[1]} and {ENV[2]} must be integers: {exc}") from exc
    if not 0 <= rank < n:
        raise FerError(f"{ENV[2]}={rank} must be in 0..{n - 1} ({ENV[1]}={n})")
    return os.environ[ENV[0]].split(",")[0], n, rank


def place(name: str, timeout_s: int) -> Placement:
    """Set up ``train.distribute`` (one of the four the params schema allows) for this backend;
    the first thing a training does."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if name in ("data_parallel", "multi_process"):
            raise FerError(f"train.distribute {name} runs on Keras's JAX backend: set KERAS_BACKEND=jax "
                           "(docs/distributed.md); on TensorFlow use none or mirrored")
        strategy = tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.get_strategy()
        return Placement(name, devices=strategy.num_replicas_in_sync, strategy=strategy)
    if name == "mirrored":
        raise FerError(f"train.distribute mirrored is TensorFlow's; on KERAS_BACKEND={backend} use "
                       "data_parallel (local devices) or multi_process")
    if name == "none":
        return Placement(name)
    if backend != "jax":
        raise FerError(f"train.distribute {name} needs KERAS_BACKEND=jax (this run has {backend})")
    import jax

    placement = Placement(name)
    if name == "multi_process":
        address, n, rank = _env_cluster()
        placement = Placement(name, rank=rank, processes=n, address=address, timeout_s=timeout_s)
        unreached = (f"{placement.who()}: the processes did not all meet at the coordinator "
                     f"(train.distribute_timeout_s {timeout_s})")
        with Watchdog(timeout_s, unreached):
            try:
                jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=rank,
                                           initialization_timeout=2 * timeout_s,
                                           heartbeat_timeout_seconds=4 * timeout_s)
            except Exception as exc:
                raise FerError(f"{unreached}: {str(exc).splitlines()[0][:160]}") from exc
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    # Each process feeds its own rows of the global batch (inputs.FaceBatches); Keras's automatic
    # sharding takes tf.data only.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    placement.devices = len(devices)
    return placement
