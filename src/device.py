"""Which device a job runs on, and how it is set up.

Each choice is a small function of plain inputs (the launcher's environment,
the job's flags, what this MindSpore build can use), so that every branch can
be tested on any machine:

    local_rank / choose_device_id   which of the server's devices this process drives
"""

from src.errors import UserError

# Environment variables that name this process's device among its server's, most trusted first:
# DEVICE_ID is set by rank-table launches (scripts/ascend_distributed_launcher) and by msrun, which exports
# each worker's local rank under that name (mindspore/parallel/cluster/process_entity/_api.py);
# OMPI_COMM_WORLD_LOCAL_RANK is mpirun's local rank.
LOCAL_RANK_VARIABLES = ("DEVICE_ID", "OMPI_COMM_WORLD_LOCAL_RANK")
# The rank-table launcher's name for a process's position among its server's processes (`node_local_rank`).
LAUNCHER_LOCAL_RANK = "LOCAL_RANK"


class DeviceError(UserError):
    """The requested device cannot be used, or the launcher's environment is malformed."""


def local_rank(environ):
    """This process's rank among the processes of its server, as its launcher exported it.

    Args:
        environ (Mapping[str, str]): the process environment (`os.environ`).
    Returns:
        int, or None when no launcher set one (a plain single-process run).
    """
    for name in LOCAL_RANK_VARIABLES:
        value = environ.get(name, "")
        if value:
            if not value.isdigit():
                raise DeviceError(f"environment variable {name}={value!r}: expected a non-negative integer")
            return int(value)
    return None


def choose_device_id(environ, flag_device_id):
    """The device this process drives: the launcher's choice (`local_rank`) over the `--device_id` flag,
    since one flag cannot name a different device for each of a server's processes."""
    launched = local_rank(environ)
    return flag_device_id if launched is None else launched


def node_local_rank(environ):
    """This process's position among its server's processes (0: the server's first), for work done once
    per server, such as writing checkpoints to the server's own disk.

    The rank-table launcher exports it as LAUNCHER_LOCAL_RANK, because its DEVICE_ID is a physical
    device id, which need not start at 0 (hccl_tools.py --device_num=[4,8)); msrun's and mpirun's are
    `local_rank`. None when no launcher set one.
    """
    value = environ.get(LAUNCHER_LOCAL_RANK, "")
    if not value:
        return local_rank(environ)
    if not value.isdigit():
        raise DeviceError(f"environment variable {LAUNCHER_LOCAL_RANK}={value!r}: expected a non-negative integer")
    return int(value)
