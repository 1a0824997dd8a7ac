"""Which device a job runs on, and how it is set up.

Each choice is a small function of plain inputs (the launcher's environment,
the job's flags, what this MindSpore build can use), so that every branch can
be tested on any machine; `init_device` applies them to MindSpore:

    resolve_target          `device_target: auto` -> Ascend, else GPU, else CPU, as usable here
    launcher_device_id      the device the launcher gave this process (its environment)
    choose_device_id        the device this process drives: the launcher's, else --device_id
    node_local_rank         which of its server's processes this one is, counting from 0 (per-server work)
    compute_type_for        `compute_type: auto` -> float16 on Ascend/GPU, float32 on CPU
    allreduce_split_points  where fused gradient all-reduces end (encoder-layer boundaries)
    describe_setup          the one line every job prints first

MindSpore is imported only inside the functions that use it, so that
launchers can describe a set-up without loading it.
"""

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

import numpy as np

from src.errors import UserError

if TYPE_CHECKING:  # for annotations only: MindSpore stays inside the functions that use it (see above)
    from mindspore import Parameter

    from src.config import Config

AUTO = "auto"
# Targets in the order `auto` prefers them.
TARGETS = ("Ascend", "GPU", "CPU")
# Environment variables that name this process's device on its server, most trusted first:
# DEVICE_ID is set by rank-table launches (scripts/ascend_distributed_launcher: the physical device) and by
# msrun, which exports each worker's local rank under that name (mindspore/parallel/cluster/process_entity/
# _api.py); OMPI_COMM_WORLD_LOCAL_RANK is mpirun's local rank, one device per process.
DEVICE_ID_VARIABLES = ("DEVICE_ID", "OMPI_COMM_WORLD_LOCAL_RANK")
# The rank-table launcher's name for a process's position among its server's processes (`node_local_rank`).
LAUNCHER_LOCAL_RANK = "LOCAL_RANK"
# `compute_type: auto` (the matmul dtype): the zoo's mixed precision on Ascend and GPU (float16 matmuls;
# softmax, LayerNorm and residual sums stay float32 in the model), float32 on CPU, where float16 runs
# about 2x slower. Any other value of `compute_type` is an explicit choice and wins.
MIXED_PRECISION_TARGETS = ("Ascend", "GPU")
MIXED_PRECISION_TYPE = "float16"
FULL_PRECISION_TYPE = "float32"
# Fused gradient all-reduces per data-parallel step: the zoo's tables split 12- and 24-layer models into 8.
ALLREDUCE_GROUPS = 8
# The encoder layer a parameter belongs to: bert.bert_encoder.layers.<k>.attention...
LAYER_OF_PARAMETER = re.compile(r"\.layers\.(\d+)\.")


class DeviceError(UserError):
    """The requested device cannot be used, or the launcher's environment is malformed."""


# ----------------------------------------------------------------------------- target

def resolve_target(requested: str, usable: Sequence[str]) -> str:
    """The target to run on.

    Args:
        requested (str): `device_target` as the user wrote it: auto, Ascend, GPU or CPU.
        usable (tuple[str]): targets this machine's MindSpore can run on, in TARGETS order.
    Returns:
        str: `requested` itself if usable; for auto, the first usable of Ascend, GPU, CPU.
    """
    if requested == AUTO:
        return usable[0]
    if requested not in TARGETS:
        raise DeviceError(f"device_target: expected {AUTO}, {', '.join(TARGETS)}, got {requested!r}")
    if requested not in usable:
        raise DeviceError(f"device_target={requested}: this MindSpore build cannot use a {requested} device "
                          f"on this machine (usable: {', '.join(usable)}); set device_target to {AUTO} or CPU")
    return requested


def usable_targets(backend_loaded: Callable[[str], bool], device_count: Callable[[str], int]) -> tuple[str, ...]:
    """The targets that have a loaded backend and at least one device; CPU always.

    Args:
        backend_loaded (Callable[[str], bool]): whether MindSpore loaded the target's plugin.
        device_count (Callable[[str], int]): devices of the target (asked only if its plugin loaded).
    """
    return tuple(target for target in TARGETS
                 if target == "CPU" or (backend_loaded(target) and device_count(target) > 0))


@functools.cache
def detected_targets() -> tuple[str, ...]:
    """`usable_targets` of this machine, asked once per process.

    `import mindspore` tries to load each target's plugin and records whether
    it could (`is_pkg_support_device`: False, without raising, when e.g. the CUDA
    or CANN libraries are missing); a loaded plugin may still find no device.
    """
    from mindspore._c_expression import MSContext
    return usable_targets(MSContext.get_instance().is_pkg_support_device, _device_count)


def _device_count(target):
    """Devices of a target whose plugin loaded (`mindspore.device_context.gpu` / `.ascend`); 0 when its
    driver cannot list them."""
    from mindspore import device_context
    try:
        return getattr(device_context, target.lower()).device_count()
    except RuntimeError:  # a plugin without a working driver
        return 0


def job_target(cfg: "Config") -> str:
    """The resolved `device_target` of a job's config (auto where it has none)."""
    return resolve_target(_key(cfg, "device_target", AUTO), detected_targets())


# ----------------------------------------------------------------------------- device id

def launcher_device_id(environ: Mapping[str, str]) -> int | None:
    """The device this process's launcher gave it (DEVICE_ID_VARIABLES): with msrun and mpirun its rank
    among its server's processes, with a rank table the physical device.

    Args:
        environ (Mapping[str, str]): the process environment (`os.environ`).
    Returns:
        int, or None when no launcher set one (a plain single-process run).
    """
    for name in DEVICE_ID_VARIABLES:
        value = environ.get(name, "")
        if value:
            if not value.isdigit():
                raise DeviceError(f"environment variable {name}={value!r}: expected a non-negative integer")
            return int(value)
    return None


def choose_device_id(environ: Mapping[str, str], flag_device_id: int) -> int:
    """The device this process drives: the launcher's choice (`launcher_device_id`) over the `--device_id`
    flag, since one flag cannot name a different device for each of a server's processes."""
    launched = launcher_device_id(environ)
    return flag_device_id if launched is None else launched


def node_local_rank(environ: Mapping[str, str]) -> int | None:
    """This process's position among its server's processes (0: the server's first), for work done once
    per server, such as writing checkpoints to the server's own disk.

    The rank-table launcher exports it as LAUNCHER_LOCAL_RANK, because its DEVICE_ID is a physical
    device id, which need not start at 0 (hccl_tools.py --device_num=[4,8)); msrun's and mpirun's are
    `launcher_device_id`. None when no launcher set one.
    """
    value = environ.get(LAUNCHER_LOCAL_RANK, "")
    if not value:
        return launcher_device_id(environ)
    if not value.isdigit():
        raise DeviceError(f"environment variable {LAUNCHER_LOCAL_RANK}={value!r}: expected a non-negative integer")
    return int(value)


# ----------------------------------------------------------------------------- precision

def compute_type_for(requested: str, target: str) -> str:
    """The concrete matmul dtype of `compute_type: requested` on `target`: auto -> float16 on Ascend and
    GPU, float32 on CPU; anything else is the user's choice (BertConfig checks it)."""
    if requested != AUTO:
        return requested
    return MIXED_PRECISION_TYPE if target in MIXED_PRECISION_TARGETS else FULL_PRECISION_TYPE


# ----------------------------------------------------------------------------- gradient all-reduce

def allreduce_split_points(params: Sequence["Parameter"], num_groups: int = ALLREDUCE_GROUPS) -> list[int]:
    """MindSpore's `all_reduce_fusion_config` for gradients in the order of `params`: split at layer ends.

    MindSpore fuses the all-reduces of consecutive gradients into one; split
    point i closes the group holding gradient i (`_init_allreduce_operators` in
    mindspore/nn/wrap/grad_reducer.py). The encoder's layers are cut into
    `num_groups` runs of consecutive layers, as even as possible, and each run's
    group ends with its last layer's last parameter: the embeddings join the
    first run, the pooler and heads the last (whose point is the last index).
    Gradients come out of the backward pass last layer first, so a group's
    all-reduce can start while earlier layers are still being differentiated.

    The zoo hard-codes the same 8 groups for BERT-base as
    [28, 55, 82, 109, 136, 163, 190, 205]: every 27th of its 206 gradients,
    which cuts layers in two. Here (5 embedding parameters, then 16 per layer)
    layer k ends at 5 + 16 (k + 1) - 1, so base's points are
    [36, 68, 100, 132, 148, 164, 180, 205]: layers 0-1, 2-3, 4-5, 6-7, 8, 9, 10
    and 11 with the heads; the last point agrees. (The zoo's NEZHA keeps an
    unused position-embedding table, one parameter more than ours.)

    Args:
        params (list[Parameter]): the trainable parameters in the gradient reducer's order.
        num_groups (int): fused all-reduces wanted.
    Returns:
        list[int] ascending; [] when no parameter belongs to an encoder layer.
    """
    layer_ends = {}  # layer number -> index of its last parameter
    for index, param in enumerate(params):
        match = LAYER_OF_PARAMETER.search(param.name)
        if match:
            layer_ends[int(match[1])] = index
    if not layer_ends:
        return []
    runs = np.array_split(sorted(layer_ends), min(num_groups, len(layer_ends)))
    return [layer_ends[int(run[-1])] for run in runs[:-1]] + [len(params) - 1]


def set_allreduce_split(params: Sequence["Parameter"]) -> None:
    """Fuse a data-parallel step's gradient all-reduces at layer boundaries (`allreduce_split_points`);
    call before `nn.DistributedGradReducer` is created, which reads the setting."""
    import mindspore as ms
    points = allreduce_split_points(params)
    if points:
        ms.set_auto_parallel_context(all_reduce_fusion_config=points)


# ----------------------------------------------------------------------------- the set-up

@dataclasses.dataclass
class RunSetup:
    """A process's resolved device set-up, as `describe_setup` prints it."""
    target: str                 # Ascend | GPU | CPU
    device_id: int | None       # the device driven (None on CPU, which has no device ids)
    rank: int                   # global rank, 0 in a single-process run
    group_size: int             # processes in the data-parallel group
    compute_type: str           # the matmul dtype the model is built with
    overflow_check: str | None  # how the train cell detects overflowing gradients; None: the job does not train
    data_sink_steps: int = 0    # optimizer steps per data sink (src.training.data_sink_steps); 0: no sinking


def describe_setup(setup: RunSetup) -> str:
    """One line: target, device id, rank/group, compute type and, for training, overflow check and data sink."""
    device = setup.target if setup.device_id is None else f"{setup.target}:{setup.device_id}"
    line = f"device {device}, rank {setup.rank} of {setup.group_size}, compute_type {setup.compute_type}"
    if setup.overflow_check is not None:
        sink = f"on ({setup.data_sink_steps} steps per sink)" if setup.data_sink_steps else "off"
        line += f", overflow check {setup.overflow_check}, data sink {sink}"
    return line


def init_device(cfg: "Config", compute_type: str, training: bool, environ: Mapping[str, str] = os.environ,
                file: TextIO | None = None) -> RunSetup:
    """Set MindSpore's device and mode for a job, start communication in distributed runs, and print the
    set-up line (`describe_setup`) as the job's first line; returns the `RunSetup`.

    Args:
        cfg (Config): the job's `device_target` and `device_id`; optional `mode` (GRAPH), `distribute`
            (false: one device; true: join the launcher's process group and average gradients over it)
            and `enable_data_sink` with `data_sink_steps`.
        compute_type (str): the dtype the model is built with (`BertConfig.compute_type`), for the line.
        training (bool): the job trains: the line shows the overflow check and data sinking.
        environ (Mapping[str, str]): the launcher's environment (`choose_device_id`).
        file: where the line goes; None: stdout (predict.py: stderr, its stdout may be the results).
    """
    import mindspore as ms
    modes = {"GRAPH": ms.GRAPH_MODE, "PYNATIVE": ms.PYNATIVE_MODE}
    mode = _key(cfg, "mode", "GRAPH")
    if mode not in modes:
        raise DeviceError(f"mode: expected GRAPH or PYNATIVE, got {mode!r}")
    target = job_target(cfg)
    device_id = None if target == "CPU" else choose_device_id(environ, cfg.device_id)
    # Before anything runs on the device and before communication starts, as MindSpore requires.
    ms.set_device(target, device_id)
    ms.set_context(mode=modes[mode])
    rank, group_size = _init_communication() if _key(cfg, "distribute", False) else (0, 1)
    overflow_check, sink_steps = training_choices(cfg, target) if training else (None, 0)
    setup = RunSetup(target, device_id, rank, group_size, compute_type, overflow_check, sink_steps)
    print(describe_setup(setup), file=file, flush=True)
    return setup


def training_choices(cfg: "Config", target: str) -> tuple[str, int]:

    """(overflow check, optimizer steps per data sink) of a training job on `target`, as its train cell and
    loop will choose them; with `describe_setup`, a launcher can show a rank's set-up before starting it."""
    from src.train_cell import overflow_check_for
    from src.training import data_sink_steps
    sink_steps = data_sink_steps(cfg.enable_data_sink, cfg.data_sink_steps, target) if "enable_data_sink" in cfg else 0
    return overflow_check_for(target), sink_steps


def _key(cfg, name, default):
    """`cfg.name`, or `default` for jobs whose YAML has no such key."""
    return getattr(cfg, name) if name in cfg else default


def _init_communication():
    """Join the launcher's process group and average gradients over it; returns (rank, group size)."""
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=get_group_size())
    return get_rank(), get_group_size()
