"""What a process trains on: GPU memory shared, op determinism, the dtype policy (mixed
precision where Tensor Cores make it pay), and the tf.distribute strategy of ``--strategy``.

Every process of a search (the search itself, a worker, an isolated trial) calls
``configure_devices`` before it builds a model.
"""

import contextlib
import logging
import os

log = logging.getLogger(__name__)


def share_gpu_memory() -> None:
    """Let GPU memory grow as needed, so other processes can share the card: TensorFlow's own
    switch, read when it first touches a GPU (a value the user set stands)."""
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def configure_devices(deterministic: bool = False, precision: str = "float32") -> str:
    """GPU memory grows as needed (control.share_gpu_memory); with ``deterministic``,
    TensorFlow's op determinism (the same numbers from run to run on a GPU too); Keras's dtype
    policy for the models built from now on, ``precision`` resolved (see resolve_precision).
    Returns the policy's name. XLA needs nothing here: Keras's ``jit_compile="auto"`` compiles
    a model that supports it with XLA whenever a GPU is visible."""
    share_gpu_memory()  # before TensorFlow first touches a GPU
    import keras

    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def resolve_precision(precision: str) -> str:
    """``precision``, with "auto" resolved: mixed_float16 when every visible GPU has Tensor
    Cores (compute capability 7.0 or more), where float16 arithmetic runs several times
    faster; float32 otherwise (on a CPU, mixed precision is slower)."""
    if precision != "auto":
        return precision
    capabilities = gpu_capabilities()
    if capabilities and min(capabilities) >= (7, 0):
        return "mixed_float16"
    return "float32"


def gpu_capabilities() -> list[tuple[int, int]]:
    """The compute capability of each visible GPU."""
    import tensorflow as tf

    return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability",
                                                                     (0, 0)))
            for gpu in tf.config.list_physical_devices("GPU")]


def distribution_strategy(name: str):
    """The tf.distribute strategy ``--strategy`` names, or None."""
    if name != "mirrored":
        return None
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    devices = ", ".join(strategy.extended.worker_devices)
    log.info(f"each trial trains on {strategy.num_replicas_in_sync} replicas ({devices}) with "
             "MirroredStrategy; the batch size searched is per replica")
    return strategy


def visible_gpus() -> int:
    """How many GPUs TensorFlow sees (0 on a machine without)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def cpu_model() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor"), or its architecture where the
    system does not say."""
    import platform

    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """The machine in a phrase, for a run's record: CPU model and cores, GPUs, TensorFlow."""
    import tensorflow as tf

    cpu = cpu_model()
    gpus = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]
    return (f"{cpu}, {os.cpu_count()} cores; {', '.join(gpus) or 'no GPU'}; TensorFlow "
            f"{tf.__version__}")
