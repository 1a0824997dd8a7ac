"""Write the shell script that starts one pretraining process per Ascend device of this server.

    python scripts/ascend_distributed_launcher/get_distribute_pretrain_cmd.py \
        --data_dir=DIR --hccl_config_dir=RANK_TABLE.json [--server_id=IP] [--dry_run=true] ...

The rank table (HCCL's JSON, version 1.0 or the older group_list format;
`hccl_tools.py` writes one for a single server) lists every server and device
of the job. This script picks the server it runs on, and for each of its
devices, in rank order, emits a block that creates LOG<rank>/, exports the
variables HCCL, MindSpore and run_pretrain.py read (RANK_TABLE_FILE, RANK_ID,
DEVICE_ID, LOCAL_RANK, RANK_SIZE, DEVICE_NUM, HCCL_CONNECT_TIMEOUT,
GLOG_log_dir) and starts run_pretrain.py in the background in LOG<rank>/,
pinned to its share of the CPU cores, logging to LOG<rank>/pretraining_log.txt.
The `[config]` section of the hyper-parameter file becomes `--key=value` flags
(relative paths in it are relative to LOG<rank>/, as in the zoo). The first
rank of each server saves the checkpoints, by default into ./checkpoints/ of
the launch directory. Run the same command, in the same directory, on every
server of the table.
"""

import argparse
import configparser
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NoReturn

LAUNCHER_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(LAUNCHER_DIR))
sys.path.insert(0, REPO)
from src.config import ConfigError, bool_flag, load_config, parse_bool  # noqa: E402
from src.device import LAUNCHER_LOCAL_RANK, RunSetup, compute_type_for, describe_setup, training_choices  # noqa: E402
from src.errors import UserError, exit_on_user_error  # noqa: E402

ASCEND = "Ascend"
DEFAULT_RUN_SCRIPT = os.path.join(REPO, "run_pretrain.py")
DEFAULT_HYPER_PARAMETERS = os.path.join(LAUNCHER_DIR, "hyper_parameter_config.ini")
PRETRAIN_CONFIG = os.path.join(REPO, "pretrain_config.yaml")
DEFAULT_HCCN_CONF = "/etc/hccn.conf"
DEFAULT_CMD_FILE = "distributed_cmd.sh"
DEFAULT_HCCL_TIME_OUT_S = 600
RANK_TABLE_VERSION = "1.0"
HYPER_PARAMETER_SECTION = "config"
LOG_FILE = "pretraining_log.txt"
# Flags the launcher itself gives every process; the hyper-parameter file may not set them.
LAUNCHER_FLAGS = ("device_target", "device_id", "device_num", "data_dir", "output_dir")
# Each server's first rank saves the checkpoints here, under the launch directory, unless the hyper-parameter
# file sets save_checkpoint_path: the same path on every server, so one load_checkpoint_path resumes them all.
CHECKPOINT_DIR = "checkpoints"
GLOG_DIR = "ms_log"  # MindSpore's log files (with GLOG_logtostderr=0), in each rank's LOG<rank>/
HCCN_ADDRESS_PREFIX = "address_"
HOSTNAME_ADDRESSES_COMMAND = ("hostname", "-I")  # every address of this machine, on Linux
HOSTNAME_TIMEOUT_S = 10
# The rank-table checks' way to fail: raise RankTableError naming the file (`parse_rank_table`'s `fail`).
Fail = Callable[[str], NoReturn]


class RankTableError(UserError):
    """The rank table, hccn.conf or --server_id is malformed or inconsistent."""


class LauncherError(UserError):
    """A launcher flag or the hyper-parameter file has a bad value."""


@dataclass(frozen=True)
class Device:
    device_id: int
    device_ip: str
    rank_id: int


@dataclass(frozen=True)
class Server:
    server_id: str
    devices: tuple  # of Device, in rank order


@dataclass(frozen=True)
class RankTable:
    path: str  # absolute: exported to the workers as RANK_TABLE_FILE
    servers: tuple  # of Server, as listed

    @property
    def rank_size(self) -> int:
        return sum(len(server.devices) for server in self.servers)


def read_rank_table(path: str) -> RankTable:
    """Read and validate a rank table file; any problem raises RankTableError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as error:
        raise RankTableError(f"{path}: cannot read rank table ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise RankTableError(f"{path}: not valid JSON ({error})") from None
    return parse_rank_table(data, os.path.abspath(path))


def parse_rank_table(data: object, path: str) -> RankTable:
    """Validate rank table `data` (parsed JSON) read from `path`; returns a RankTable.

    Two formats: version 1.0 (`server_list[].device[]`, each device with its rank_id), and the older,
    version-less one (`group_list[].instance_list[]`: one instance per rank naming its server_id and its
    one device), which older MindSpore releases and the zoo's examples use.
    """
    def fail(problem):
        raise RankTableError(f"{path}: {problem}")

    if not isinstance(data, dict):
        fail("the top level must be a JSON object")
    if "version" in data:
        servers = parse_server_list(data, fail)
    elif "group_list" in data:
        servers = parse_group_list(data, fail)
    else:
        fail("missing key 'version' (format 1.0, with server_list) or 'group_list' (the older format)")
    check_servers_agree(servers, fail)
    return RankTable(path=path, servers=servers)


def parse_server_list(data: dict, fail: Fail) -> tuple[Server, ...]:
    """Version 1.0: `server_list[]` of {server_id, device: [{device_id, device_ip, rank_id}]}."""
    version = required(data, "version", "", fail)
    if version != RANK_TABLE_VERSION:
        fail(f"version must be {RANK_TABLE_VERSION!r} (or no version, with the older group_list), got {version!r}")
    server_list = non_empty_list(data, "server_list", "", fail)
    server_count = number(required(data, "server_count", "", fail), "server_count", fail)
    if server_count != len(server_list):
        fail(f"server_count is {server_count} but server_list has {len(server_list)} servers")
    servers = []
    for index, entry in enumerate(server_list):
        where = f"server_list[{index}]"
        devices = [parse_device(item, rank_number(item, f"{where}.device[{k}]", fail), f"{where}.device[{k}]", fail)
                   for k, item in enumerate(non_empty_list(entry, "device", where, fail))]
        servers.append(make_server(required(entry, "server_id", where, fail), devices, where, fail))
    return tuple(servers)


def parse_group_list(data: dict, fail: Fail) -> tuple[Server, ...]:
    """The older format: `group_list[].instance_list[]` of {rank_id, server_id, devices: [{device_id,
    device_ip}]}; servers in order of first appearance."""
    group_list = non_empty_list(data, "group_list", "", fail)
    group_count = number(required(data, "group_count", "", fail), "group_count", fail)
    if group_count != len(group_list):
        fail(f"group_count is {group_count} but group_list has {len(group_list)} groups")
    devices_by_server = {}
    for g, group in enumerate(group_list):
        where = f"group_list[{g}]"
        instances = non_empty_list(group, "instance_list", where, fail)
        instance_count = number(required(group, "instance_count", where, fail), f"{where}.instance_count", fail)
        if instance_count != len(instances):
            fail(f"{where}.instance_count is {instance_count} but its instance_list has {len(instances)} instances")
        for i, instance in enumerate(instances):
            at = f"{where}.instance_list[{i}]"
            devices = non_empty_list(instance, "devices", at, fail)
            if len(devices) != 1:
                fail(f"{at}.devices must list exactly one device (one rank per instance), got {len(devices)}")
            device = parse_device(devices[0], rank_number(instance, at, fail), f"{at}.devices[0]", fail)
            devices_by_server.setdefault(required(instance, "server_id", at, fail), []).append(device)
    return tuple(make_server(server_id, devices, f"group_list (server {server_id})", fail)
                 for server_id, devices in devices_by_server.items())


def rank_number(entry: object, where: str, fail: Fail) -> int:
    return number(required(entry, "rank_id", where, fail), f"{where}.rank_id", fail)


def parse_device(item: object, rank_id: int, at: str, fail: Fail) -> Device:
    """One device entry at `at`, with the rank id its format stores in it or beside it -> Device."""
    device_ip = required(item, "device_ip", at, fail)
    check_ip(device_ip, f"{at}.device_ip", fail)
    return Device(device_id=number(required(item, "device_id", at, fail), f"{at}.device_id", fail),
                  device_ip=device_ip, rank_id=rank_id)


def make_server(server_id: str, devices: Sequence[Device], where: str, fail: Fail) -> Server:
    """Server of `devices` in rank order; device ids must be unique on the server."""
    device_ids = [device.device_id for device in devices]
    if len(set(device_ids)) != len(device_ids):
        fail(f"{where} (server {server_id}) lists a device_id twice: {sorted(device_ids)}")
    return Server(server_id=server_id, devices=tuple(sorted(devices, key=lambda device: device.rank_id)))


def check_servers_agree(servers: Sequence[Server], fail: Fail) -> None:
    """Equal device counts per server, unique server ids, and rank ids exactly 0..N-1 once each."""
    counts = {server.server_id: len(server.devices) for server in servers}
    if len(counts) != len(servers):
        fail("the table lists a server_id twice")
    if len(set(counts.values())) > 1:
        fail(f"servers have different numbers of devices: {counts}")
    rank_ids = sorted(device.rank_id for server in servers for device in server.devices)
    if len(set(rank_ids)) != len(rank_ids):
        fail(f"duplicate rank_id in {rank_ids}")
    if rank_ids != list(range(len(rank_ids))):
        fail(f"rank ids must be exactly 0..{len(rank_ids) - 1}, got {rank_ids}")


def required(mapping: object, key: str, where: str, fail: Fail) -> object:
    """`mapping[key]`, or a failure naming the missing key and where it was expected."""
    if not isinstance(mapping, dict):
        fail(f"{where or 'the top level'} must be a JSON object")
    if key not in mapping:
        fail(f"missing key {(where + '.' if where else '') + key!r}")
    return mapping[key]


def non_empty_list(mapping: object, key: str, where: str, fail: Fail) -> list:
    """`mapping[key]`, which must be a non-empty JSON list."""
    value = required(mapping, key, where, fail)
    if not isinstance(value, list) or not value:
        fail(f"{(where + '.' if where else '') + key} must be a non-empty list")
    return value


def number(text: object, where: str, fail: Fail) -> int:
    """A non-negative integer written as a string, as HCCL's rank table spells numbers."""
    if not isinstance(text, str) or not text.isdigit():
        fail(f"{where} must be a non-negative integer as a string, e.g. \"0\"; got {text!r}")
    return int(text)


def check_ip(text: object, where: str, fail: Fail) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        fail(f"{where} must be an IP address, got {text!r}")


def read_hccn_conf(path: str) -> dict[int, str]:
    """{device_id: ip} from hccn.conf's `address_<device_id>=<ip>` lines; {} when the file does not exist."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as error:
        raise RankTableError(f"{path}: cannot read hccn.conf ({error.strerror})") from None
    addresses = {}
    for line in lines:
        key, _, value = line.strip().partition("=")
        suffix = key[len(HCCN_ADDRESS_PREFIX):]
        if key.startswith(HCCN_ADDRESS_PREFIX) and suffix.isdigit():
            addresses[int(suffix)] = value.strip()
    return addresses


def check_device_ips(table: RankTable, server: Server, hccn_ips: Mapping[int, str], hccn_path: str) -> None:
    """Each device's IP in the rank table must be the one hccn.conf gives its NIC (HCCL would hang otherwise)."""
    for device in server.devices:
        configured = hccn_ips.get(device.device_id)
        if configured is not None and configured != device.device_ip:
            raise RankTableError(f"{table.path}: device {device.device_id} of server {server.server_id} has "
                                 f"device_ip {device.device_ip} but {hccn_path} gives {configured}")


def local_addresses() -> set[str]:
    """This machine's IP addresses: the host name's, plus `hostname -I` where available."""
    addresses = set()
    try:
        addresses.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass  # an unresolvable host name: `hostname -I` may still answer
    try:
        result = subprocess.run(HOSTNAME_ADDRESSES_COMMAND, capture_output=True, text=True,
                                timeout=HOSTNAME_TIMEOUT_S, check=True)
        addresses.update(result.stdout.split())
    except (OSError, subprocess.SubprocessError):
        pass  # not Linux's hostname: the host name's addresses must do
    return addresses


def select_server(table: RankTable, server_id: str | None, addresses: Collection[str] | None) -> Server:
    """The server this machine is: `server_id` if given, else the one whose id is among `addresses`."""
    ids = [server.server_id for server in table.servers]
    if server_id is not None:
        if server_id not in ids:
            raise RankTableError(f"--server_id {server_id}: not a server of {table.path} (servers: {', '.join(ids)})")
        return table.servers[ids.index(server_id)]
    matches = [server for server in table.servers if server.server_id in addresses]
    if len(matches) != 1:
        problem = "none of" if not matches else "several of"
        raise RankTableError(f"{table.path}: {problem} this machine's addresses ({', '.join(sorted(addresses))}) "
                             f"is a server_id of the table ({', '.join(ids)}); pass --server_id")
    return matches[0]


def read_hyper_parameters(path: str) -> list[tuple[str, str]]:
    """[(key, value)] run_pretrain.py flags from the `[config]` section of `path`.

    Keys are those of the job's YAML (pretrain_config.yaml, or the file `config_path` names) and the zoo's
    two launcher keys: `config_path` is relative to this ini file's directory (so the zoo's value
    ../../pretrain_config.yaml names the repo's file, as in the zoo, which resolves it from the same depth,
    src/model_utils/) and is passed on as an absolute path; `distribute` must be true and is dropped (the
    launcher gives every rank --distribute=true).
    """
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep keys' case: `Lamb.learning_rate` is not `lamb.learning_rate`
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as error:
        raise LauncherError(f"{path}: cannot read hyper-parameter file ({error.strerror})") from None
    except configparser.Error as error:
        raise LauncherError(f"{path}: not a valid ini file ({' '.join(str(error).split())})") from None
    if parser.sections() != [HYPER_PARAMETER_SECTION]:
        raise LauncherError(f"{path}: expected exactly one section [{HYPER_PARAMETER_SECTION}], "
                            f"got {parser.sections()}")
    items = resolve_launcher_keys(parser[HYPER_PARAMETER_SECTION].items(), path)
    check_hyper_parameters(items, path)
    return items


def resolve_launcher_keys(items: Iterable[tuple[str, str]], path: str) -> list[tuple[str, str]]:
    """The ini's (key, value) pairs with `distribute` checked and dropped and `config_path` made absolute."""
    resolved = []
    for key, value in items:
        if key == "distribute":
            if parse_bool(value) is not True:
                raise LauncherError(f"{path}: distribute = {value}: this launcher starts a data-parallel job; set "
                                    "it to true or remove it (one device: run_standalone_pretrain_ascend.sh)")
        elif key == "config_path":
            resolved.append((key, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), value))))
        else:
            resolved.append((key, value))
    return resolved


def check_hyper_parameters(items: Sequence[tuple[str, str]], path: str) -> None:
    """Load the job's config with these values (its YAML: pretrain_config.yaml or `config_path`), so unknown
    keys and bad types fail here, not once per rank."""
    for key, _ in items:
        if key in LAUNCHER_FLAGS:
            raise LauncherError(f"{path}: {key} is set by the launcher; remove it")
    try:
        load_config(PRETRAIN_CONFIG, [f"--{key}={value}" for key, value in items])
    except ConfigError as error:
        raise LauncherError(f"{path}: {error}") from None


def core_ranges(device_count: int, cpu_count: int | None) -> list[tuple[int, int]]:
    """[(first, last)] CPU cores for each of `device_count` processes: an equal, disjoint share each."""
    cores_per_device = (cpu_count or 0) // device_count
    if cores_per_device < 1:
        raise LauncherError(f"--bind_cores: {cpu_count} CPU cores cannot be shared by {device_count} devices; "
                            "pass --bind_cores=false")
    return [(k * cores_per_device, (k + 1) * cores_per_device - 1) for k in range(device_count)]


@dataclass(frozen=True)
class Launch:
    """What every rank's block shares."""
    table: RankTable
    server: Server  # this machine
    python: str  # the interpreter that runs run_script
    run_script: str  # absolute
    data_dir: str  # absolute
    hyper_parameter_flags: tuple  # of "--key=value" (`run_flags`)
    log_root: str  # absolute: LOG<rank>/ directories go here
    hccl_time_out: int
    setup: RunSetup  # what every rank resolves (`resolved_setup`); device and rank differ per block


def device_block(launch: Launch, device: Device, local_rank: int, cores: tuple[int, int] | None) -> list[str]:
    """The lines that set up and start one rank: its environment, and its process in the background,
    working in its own LOG<rank>/ directory with its own GLOG_log_dir, so that what MindSpore writes into
    the working directory (graph dumps, kernel_meta/, rank_*/) and its log files never collide between ranks.

    `local_rank` is the rank's position among this server's; `cores` is the (first, last) CPU cores to pin
    it to, or None for no pinning.
    """
    log_dir = os.path.join(launch.log_root, f"LOG{device.rank_id}")
    command = [launch.python, launch.run_script, "--distribute=true", f"--device_target={ASCEND}",
               f"--device_id={device.device_id}", f"--device_num={launch.table.rank_size}",
               f"--data_dir={launch.data_dir}", f"--output_dir={log_dir}", *launch.hyper_parameter_flags]
    if cores is not None:
        command = ["taskset", "-c", f"{cores[0]}-{cores[1]}", *command]
    environment = {"RANK_TABLE_FILE": launch.table.path, "RANK_ID": device.rank_id, "DEVICE_ID": device.device_id,
                   LAUNCHER_LOCAL_RANK: local_rank, "RANK_SIZE": launch.table.rank_size,
                   "DEVICE_NUM": len(launch.server.devices), "HCCL_CONNECT_TIMEOUT": launch.hccl_time_out,
                   "GLOG_log_dir": os.path.join(log_dir, GLOG_DIR)}
    setup = replace(launch.setup, device_id=device.device_id, rank=device.rank_id)
    return [f"# rank {device.rank_id}: {describe_setup(setup)}",
            f"mkdir -p {shlex.quote(environment['GLOG_log_dir'])}",
            *(f"export {name}={shlex.quote(str(value))}" for name, value in environment.items()),
            f"cd {shlex.quote(log_dir)}",
            f"{shlex.join(command)} > {shlex.quote(os.path.join(log_dir, LOG_FILE))} 2>&1 &",
            ""]


def resolved_setup(hyper_parameter_flags: Iterable[str], rank_size: int) -> RunSetup:
    """The set-up run_pretrain.py will resolve on an Ascend device with these flags (compute type, overflow
    check, data sinking), for the dry run to show before anything starts."""
    cfg = load_config(PRETRAIN_CONFIG, list(hyper_parameter_flags))
    overflow_check, sink_steps = training_choices(cfg, ASCEND)
    return RunSetup(ASCEND, None, 0, rank_size, compute_type_for(cfg.model.compute_type, ASCEND), overflow_check,
                    sink_steps)


def run_flags(hyper_parameters: Iterable[tuple[str, str]], log_root: str) -> tuple[str, ...]:
    """`--key=value` for the hyper-parameter file's items, after the launcher's save_checkpoint_path
    (<log_root>/checkpoints) unless the file sets one."""
    items = list(hyper_parameters)
    if "save_checkpoint_path" not in dict(items):
        items.insert(0, ("save_checkpoint_path", os.path.join(log_root, CHECKPOINT_DIR)))
    return tuple(f"--{key}={value}" for key, value in items)


def command_script(args: argparse.Namespace, cpu_count: int | None, addresses: Collection[str] | None = None,
                   log_root: str | None = None, python: str = sys.executable) -> str:
    """The generated shell script's text for the parsed `args`.

    `cpu_count` is the number of cores to share out; `addresses` are this
    machine's IPs (looked up when needed and not given); LOG dirs go under
    `log_root` (default: the current directory); `python` runs run_pretrain.py
    (default: this interpreter, which the wrapper script takes from the repo's .venv).
    """
    table = read_rank_table(args.hccl_config_dir)
    if args.server_id is None and addresses is None:
        addresses = local_addresses()
    server = select_server(table, args.server_id, addresses)
    check_device_ips(table, server, read_hccn_conf(args.hccn_conf), args.hccn_conf)
    hyper_parameters = read_hyper_parameters(args.hyper_parameter_config_dir)
    log_root = os.path.abspath(log_root or os.getcwd())
    if not os.path.isdir(args.data_dir):
        raise LauncherError(f"--data_dir {args.data_dir}: not a directory")
    if not os.path.isfile(args.run_script_dir):
        raise LauncherError(f"--run_script_dir {args.run_script_dir}: no such file")
    flags = run_flags(hyper_parameters, log_root)
    launch = Launch(table=table, server=server, python=python, run_script=os.path.abspath(args.run_script_dir),
                    data_dir=os.path.abspath(args.data_dir), hyper_parameter_flags=flags, log_root=log_root,
                    hccl_time_out=args.hccl_time_out, setup=resolved_setup(flags, table.rank_size))
    cores = core_ranges(len(server.devices), cpu_count) if args.bind_cores else [None] * len(server.devices)
    lines = ["#!/usr/bin/env bash",
             f"# Generated by {os.path.relpath(__file__, REPO)} for server {server.server_id} of {table.path}:",
             f"# {len(server.devices)} of {table.rank_size} ranks; logs in LOG<rank>/{LOG_FILE}.",
             "set -e", ""]
    for local_rank, (device, device_cores) in enumerate(zip(server.devices, cores)):
        lines += device_block(launch, device, local_rank, device_cores)
    lines.append(f"echo \"started {len(server.devices)} pretraining processes; logs: "
                 f"{os.path.join(launch.log_root, 'LOG<rank>', LOG_FILE)}\"")
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    """Write through a temporary file in the same directory, so a reader never sees half a script."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=os.path.basename(path))
    except OSError as error:
        raise LauncherError(f"{path}: cannot write ({error.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the script from other users
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def positive_int(text: str) -> int:
    """argparse type for a count of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--run_script_dir", default=DEFAULT_RUN_SCRIPT,
                        help="the training script each process runs (default: the repo's run_pretrain.py)")
    parser.add_argument("--hyper_parameter_config_dir", default=DEFAULT_HYPER_PARAMETERS,
                        help="ini file whose [config] `key = value` lines become run_pretrain.py's --key=value")
    parser.add_argument("--data_dir", required=True, help="directory of pretraining shards, the same on every server")
    parser.add_argument("--hccl_config_dir", required=True, help="the HCCL rank table (JSON) of the whole job")
    parser.add_argument("--hccn_conf", "--hccn_config_file", default=DEFAULT_HCCN_CONF,
                        help="hccn.conf whose address_<device_id> lines must match the rank table's device_ip "
                             "(skipped if the file does not exist)")
    parser.add_argument("--server_id", default=None,
                        help="this machine's server_id in the rank table (default: the one among its IP addresses)")
    parser.add_argument("--cmd_file", default=DEFAULT_CMD_FILE, help="where to write the generated shell script")
    parser.add_argument("--hccl_time_out", type=positive_int, default=DEFAULT_HCCL_TIME_OUT_S,
                        help="seconds HCCL waits for the other ranks to connect (HCCL_CONNECT_TIMEOUT)")
    parser.add_argument("--bind_cores", type=bool_flag, default=True,
                        help="true: pin each process to an equal share of the CPU cores with taskset")
    parser.add_argument("--dry_run", type=bool_flag, default=False,
                        help="true: print the script instead of writing it")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:

    args = parse_args(argv)
    script = command_script(args, os.cpu_count())
    if args.dry_run:
        print(script, end="")
        return
    write_atomically(args.cmd_file, script)
    print(f"wrote {args.cmd_file}; start the processes with: bash {shlex.quote(args.cmd_file)}")


if __name__ == "__main__":
    main()
