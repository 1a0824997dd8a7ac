"""The Ascend rank-table launcher: generated commands, rank-table validation, hccl_tools, the shell wrapper.

Everything runs as dry runs or with a stand-in training script: no Ascend device is needed.
"""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

LAUNCHER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "scripts", "ascend_distributed_launcher")
sys.path.insert(0, LAUNCHER_DIR)
import get_distribute_pretrain_cmd as launcher  # noqa: E402
import hccl_tools  # noqa: E402

SCRIPT = "scripts/run_distributed_pretrain_ascend.sh"
DEVICES_PER_SERVER = 8
SERVERS = ("10.0.0.1", "10.0.0.2")
CPU_COUNT = 192
INI_FLAGS = ("--batch_size=32", "--bert_network=base", "--optimizer=Lamb", "--enable_lossscale=true",
             "--do_shuffle=true", "--enable_data_sink=true", "--data_sink_steps=100", "--accumulation_steps=1",
             "--save_checkpoint_steps=10000", "--save_checkpoint_num=1", "--epoch_size=40")
STAND_IN_TIMEOUT_S = 30


def device_ip(server_index, device_id):
    return f"192.{server_index + 1}.27.{device_id + 1}"


def rank_table(server_ids=SERVERS[:1], devices=DEVICES_PER_SERVER):
    """A valid table: rank = server index * devices + device id."""
    return {"version": "1.0", "server_count": str(len(server_ids)),
            "server_list": [{"server_id": server_id, "host_nic_ip": "reserve",
                             "device": [{"device_id": str(d), "device_ip": device_ip(s, d),
                                         "rank_id": str(s * devices + d)} for d in range(devices)]}
                            for s, server_id in enumerate(server_ids)],
            "status": "completed"}


def older_format(table):
    """The same job as the version 1.0 `table`, in the older group_list format (one instance per rank)."""
    instances = [{"devices": [{"device_id": device["device_id"], "device_ip": device["device_ip"]}],
                  "rank_id": device["rank_id"], "server_id": server["server_id"]}
                 for server in table["server_list"] for device in server["device"]]
    return {"board_id": "0x0000", "chip_info": "910", "deploy_mode": "lab", "group_count": "1",
            "group_list": [{"device_num": str(len(instances)), "server_num": table["server_count"],
                            "group_name": "", "instance_count": str(len(instances)),
                            "instance_list": instances}],
            "para_plane_nic_location": "device", "para_plane_nic_num": "8",
            "para_plane_nic_name": [f"eth{d}" for d in range(DEVICES_PER_SERVER)], "status": "completed"}


def write_table(tmp_path, table, name="rank_table.json"):
    path = tmp_path / name
    path.write_text(json.dumps(table))
    return path


def generate(tmp_path, table_path, *flags, cpu_count=CPU_COUNT, addresses=(SERVERS[0],)):
    """The script generated on a machine whose addresses are `addresses`, with LOG dirs under tmp_path."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    args = launcher.parse_args([f"--data_dir={data_dir}", f"--hccl_config_dir={table_path}",
                                f"--hccn_conf={tmp_path / 'no_hccn.conf'}", *flags])
    return launcher.command_script(args, cpu_count, addresses=addresses, log_root=tmp_path, python="python")


def blocks(script):
    """Per started rank: {'env': {NAME: value}, 'mkdir': dir, 'cwd': dir, 'command': [argv], 'log': file}."""
    result = []
    for line in script.splitlines():
        if line.startswith("mkdir -p "):
            result.append({"env": {}, "mkdir": shlex.split(line)[2]})
        elif line.startswith("export "):
            name, value = shlex.split(line)[1].split("=", 1)
            result[-1]["env"][name] = value
        elif line.startswith("cd "):
            result[-1]["cwd"] = shlex.split(line)[1]
        elif line.endswith(" 2>&1 &"):
            words = shlex.split(line[:-len(" 2>&1 &")])
            assert words[-2] == ">"
            result[-1]["command"], result[-1]["log"] = words[:-2], words[-1]
    return result


def flag_values(command):
    return dict(word[2:].split("=", 1) for word in command if word.startswith("--"))


@pytest.mark.parametrize("server_index", [None, 0, 1])
def test_each_device_gets_its_rank_environment_and_cores(tmp_path, server_index):
    server_ids = SERVERS[:1] if server_index is None else SERVERS
    table_path = write_table(tmp_path, rank_table(server_ids))
    server_id = server_ids[server_index or 0]
    rank_size = DEVICES_PER_SERVER * len(server_ids)
    first_rank = (server_index or 0) * DEVICES_PER_SERVER
    started = blocks(generate(tmp_path, table_path, f"--server_id={server_id}"))

    assert len(started) == DEVICES_PER_SERVER
    for device_id, block in enumerate(started):
        rank = first_rank + device_id
        log_dir = str(tmp_path / f"LOG{rank}")
        assert block["env"] == {"RANK_TABLE_FILE": str(table_path), "RANK_ID": str(rank),
                                "DEVICE_ID": str(device_id), "LOCAL_RANK": str(device_id),
                                "RANK_SIZE": str(rank_size), "DEVICE_NUM": str(DEVICES_PER_SERVER),
                                "HCCL_CONNECT_TIMEOUT": "600", "GLOG_log_dir": f"{log_dir}/ms_log"}
        assert block["mkdir"] == f"{log_dir}/ms_log" and block["cwd"] == log_dir
        assert block["log"] == f"{log_dir}/pretraining_log.txt"
        cores_per_device = CPU_COUNT // DEVICES_PER_SERVER
        assert block["command"][:5] == ["taskset", "-c",
                                        f"{device_id * cores_per_device}-{(device_id + 1) * cores_per_device - 1}",
                                        "python", launcher.DEFAULT_RUN_SCRIPT]
        assert flag_values(block["command"]) == {
            "distribute": "true", "device_target": "Ascend", "device_id": str(device_id),
            "device_num": str(rank_size), "data_dir": str(tmp_path / "data"), "output_dir": log_dir,
            "save_checkpoint_path": str(tmp_path / "checkpoints"), **flag_values(INI_FLAGS)}


@pytest.mark.parametrize("server_ids, server_id", [(SERVERS[:1], SERVERS[0]), (SERVERS, SERVERS[0]),
                                                  (SERVERS, SERVERS[1])])
def test_older_rank_table_format_gives_the_same_commands(tmp_path, server_ids, server_id):
    """1x8 and 2x8 tables: the group_list format starts exactly what version 1.0 starts (same file path)."""
    table = rank_table(server_ids)
    newer = generate(tmp_path, write_table(tmp_path, table), f"--server_id={server_id}")
    older = generate(tmp_path, write_table(tmp_path, older_format(table)), f"--server_id={server_id}")
    assert older == newer and len(blocks(older)) == DEVICES_PER_SERVER


@pytest.mark.parametrize("damage, problem", [
    (lambda table: table.pop("group_count"), "missing key 'group_count'"),
    (lambda table: table["group_list"][0].update(instance_count="15"),
     "group_list[0].instance_count is 15 but its instance_list has 16 instances"),
    (lambda table: table["group_list"][0]["instance_list"][2]["devices"].append({}),
     "group_list[0].instance_list[2].devices must list exactly one device (one rank per instance), got 2"),
    (lambda table: table["group_list"][0]["instance_list"][9].update(rank_id="x"),
     "group_list[0].instance_list[9].rank_id must be a non-negative integer as a string"),
    (lambda table: table["group_list"][0]["instance_list"][9].update(rank_id="0"), "duplicate rank_id"),
])
def test_malformed_older_rank_table_names_the_entry(tmp_path, damage, problem):
    table = older_format(rank_table(SERVERS))
    damage(table)
    table_path = write_table(tmp_path, table)
    with pytest.raises(launcher.RankTableError) as error:
        generate(tmp_path, table_path, f"--server_id={SERVERS[0]}")
    assert str(error.value).startswith(f"{table_path}: ") and problem in str(error.value)


def test_core_ranges_split_evenly():
    assert launcher.core_ranges(8, 192)[:3] == [(0, 23), (24, 47), (48, 71)]
    assert launcher.core_ranges(8, 192)[-1] == (168, 191)
    assert launcher.core_ranges(3, 8) == [(0, 1), (2, 3), (4, 5)]


def test_too_few_cores_to_bind_is_an_error(tmp_path):
    with pytest.raises(launcher.LauncherError, match="--bind_cores: 4 CPU cores cannot be shared by 8 devices"):
        generate(tmp_path, write_table(tmp_path, rank_table()), cpu_count=4)


def test_bind_cores_false_starts_without_taskset(tmp_path):
    script = generate(tmp_path, write_table(tmp_path, rank_table()), "--bind_cores=false", cpu_count=1)
    assert "taskset" not in script
    assert all(block["command"][:2] == ["python", launcher.DEFAULT_RUN_SCRIPT] for block in blocks(script))


def test_hccl_time_out_is_exported(tmp_path):
    started = blocks(generate(tmp_path, write_table(tmp_path, rank_table()), "--hccl_time_out=1200"))
    assert {block["env"]["HCCL_CONNECT_TIMEOUT"] for block in started} == {"1200"}


def test_local_addresses_combine_host_name_and_hostname_command(monkeypatch):
    monkeypatch.setattr(launcher.socket, "gethostbyname_ex", lambda name: (name, [], ["10.0.0.1"]))
    monkeypatch.setattr(launcher.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, stdout="10.0.0.1 10.0.0.2 fd00::2 \n"))
    assert launcher.local_addresses() == {"10.0.0.1", "10.0.0.2", "fd00::2"}


def test_local_addresses_survive_failing_lookups(monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("lookup failed")
    monkeypatch.setattr(launcher.socket, "gethostbyname_ex", fail)
    monkeypatch.setattr(launcher.subprocess, "run", fail)
    assert launcher.local_addresses() == set()


def test_server_found_from_this_machines_addresses(tmp_path):
    table_path = write_table(tmp_path, rank_table(SERVERS))
    started = blocks(generate(tmp_path, table_path, addresses={"127.0.0.1", SERVERS[1]}))
    assert [block["env"]["RANK_ID"] for block in started] == [str(rank) for rank in range(8, 16)]


@pytest.mark.parametrize("addresses, problem", [({"127.0.0.1"}, "none of"), (set(SERVERS), "several of")])
def test_server_not_found_or_ambiguous_is_an_error(tmp_path, addresses, problem):
    table_path = write_table(tmp_path, rank_table(SERVERS))
    with pytest.raises(launcher.RankTableError, match=f"^{table_path}: {problem} this machine's addresses"):
        generate(tmp_path, table_path, addresses=addresses)


def test_unknown_server_id_is_an_error(tmp_path):
    table_path = write_table(tmp_path, rank_table(SERVERS))
    with pytest.raises(launcher.RankTableError, match=f"--server_id 10.0.0.9: not a server of {table_path}"):
        generate(tmp_path, table_path, "--server_id=10.0.0.9")


def drop_top_key(table):
    del table["server_list"]


def drop_version(table):
    del table["version"]


def drop_rank_id(table):
    del table["server_list"][0]["device"][3]["rank_id"]


def duplicate_rank(table):
    table["server_list"][0]["device"][1]["rank_id"] = "0"


def skip_rank(table):
    table["server_list"][1]["device"][7]["rank_id"] = "16"


def count_mismatch(table):
    table["server_count"] = "3"


def wrong_version(table):
    table["version"] = "1.1"


def uneven_servers(table):
    table["server_list"][1]["device"].pop()


def duplicate_device(table):
    table["server_list"][0]["device"][1]["device_id"] = "0"


def integer_rank(table):
    table["server_list"][0]["device"][0]["rank_id"] = 0


@pytest.mark.parametrize("damage, problem", [
    (drop_top_key, "missing key 'server_list'"),
    (drop_version, "missing key 'version' (format 1.0, with server_list) or 'group_list' (the older format)"),
    (drop_rank_id, "missing key 'server_list[0].device[3].rank_id'"),
    (duplicate_rank, "duplicate rank_id"),
    (skip_rank, "rank ids must be exactly 0..15"),
    (count_mismatch, "server_count is 3 but server_list has 2 servers"),
    (wrong_version, "version must be '1.0' (or no version, with the older group_list), got '1.1'"),
    (uneven_servers, "servers have different numbers of devices"),
    (duplicate_device, "server_list[0] (server 10.0.0.1) lists a device_id twice"),
    (integer_rank, "server_list[0].device[0].rank_id must be a non-negative integer as a string"),
])
def test_malformed_rank_table_is_a_user_error_naming_the_file(tmp_path, damage, problem):
    table = rank_table(SERVERS)
    damage(table)
    table_path = write_table(tmp_path, table)
    with pytest.raises(launcher.RankTableError) as error:
        generate(tmp_path, table_path, f"--server_id={SERVERS[0]}")
    assert str(error.value).startswith(f"{table_path}: ") and problem in str(error.value)


def test_invalid_json_names_the_file(tmp_path):
    table_path = tmp_path / "broken.json"
    table_path.write_text('{"version": "1.0",')
    with pytest.raises(launcher.RankTableError, match=f"^{table_path}: not valid JSON"):
        launcher.read_rank_table(str(table_path))


def write_hccn_conf(tmp_path, ips):
    path = tmp_path / "hccn.conf"
    path.write_text("".join(f"address_{d}={ip}\nnetmask_{d}=255.255.255.0\n" for d, ip in enumerate(ips)))
    return path


@pytest.mark.parametrize("flag", ["--hccn_conf", "--hccn_config_file"])  # ours, the zoo's
def test_hccn_conf_that_agrees_is_accepted(tmp_path, flag):
    hccn = write_hccn_conf(tmp_path, [device_ip(0, d) for d in range(DEVICES_PER_SERVER)])
    assert len(blocks(generate(tmp_path, write_table(tmp_path, rank_table()), f"{flag}={hccn}"))) == 8


def test_hccn_conf_disagreeing_with_the_table_is_an_error(tmp_path):
    ips = [device_ip(0, d) for d in range(DEVICES_PER_SERVER)]
    ips[5] = "192.9.9.9"
    hccn = write_hccn_conf(tmp_path, ips)
    table_path = write_table(tmp_path, rank_table())
    with pytest.raises(launcher.RankTableError,
                       match=f"^{table_path}: device 5 of server 10.0.0.1 has device_ip 192.1.27.6 but {hccn} "
                             "gives 192.9.9.9$"):
        generate(tmp_path, table_path, f"--hccn_conf={hccn}")


ZOO_INI = """[config]
distribute=true
epoch_size=40
enable_save_ckpt=true
do_shuffle=true
enable_data_sink=true
data_sink_steps=100
accumulation_steps=1
allreduce_post_accumulation=true
save_checkpoint_path=./
save_checkpoint_num=1
config_path=../../pretrain_config.yaml
"""


def test_the_zoos_hyper_parameter_file_is_accepted(tmp_path):
    """Every key of the zoo's file; config_path is relative to the ini's directory, two levels below
    the YAML as in the zoo's layout; distribute is the launcher's own --distribute=true."""
    ini = tmp_path / "scripts" / "ascend_distributed_launcher" / "hyper_parameter_config.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(ZOO_INI)
    yaml_path = tmp_path / "pretrain_config.yaml"
    yaml_path.write_text(open(launcher.PRETRAIN_CONFIG, encoding="utf-8").read())
    script = generate(tmp_path, write_table(tmp_path, rank_table()), f"--hyper_parameter_config_dir={ini}")
    command = blocks(script)[0]["command"]
    assert [word for word in command if word.startswith("--distribute")] == ["--distribute=true"]
    assert [word for word in command if word.startswith("--save_checkpoint_path")] == ["--save_checkpoint_path=./"]
    flags = flag_values(command)
    assert flags["config_path"] == str(yaml_path) and flags["allreduce_post_accumulation"] == "true"
    assert {key: flags[key] for key in ("epoch_size", "enable_save_ckpt", "do_shuffle", "enable_data_sink",
                                        "data_sink_steps", "accumulation_steps", "save_checkpoint_num")} == {
        "epoch_size": "40", "enable_save_ckpt": "true", "do_shuffle": "true", "enable_data_sink": "true",
        "data_sink_steps": "100", "accumulation_steps": "1", "save_checkpoint_num": "1"}


def test_the_zoos_config_path_names_this_repos_yaml():
    ini = os.path.join(LAUNCHER_DIR, "hyper_parameter_config.ini")
    assert launcher.resolve_launcher_keys([("config_path", "../../pretrain_config.yaml")], ini) == [
        ("config_path", launcher.PRETRAIN_CONFIG)]


@pytest.mark.parametrize("content, problem", [
    ("[config]\ndistribute = false\n", "distribute = false: this launcher starts a data-parallel job"),
    ("[config]\nconfig_path = no.yaml\nbatch_size = 8\n", "no.yaml: cannot read config file"),
    ("[config]\nno_such_key = 1\n", "--no_such_key: unknown key"),
    ("[config]\nbatch_size = many\n", "--batch_size: expected an integer, got 'many'"),
    ("[config]\ndevice_num = 8\n", "device_num is set by the launcher"),
    ("batch_size = 32\n", "not a valid ini file"),
    ("[other]\nbatch_size = 32\n", "expected exactly one section [config]"),
])
def test_bad_hyper_parameter_file_names_the_file(tmp_path, content, problem):
    ini = tmp_path / "hyper.ini"
    ini.write_text(content)
    with pytest.raises(launcher.LauncherError) as error:
        generate(tmp_path, write_table(tmp_path, rank_table()), f"--hyper_parameter_config_dir={ini}")
    assert str(error.value).startswith(f"{ini}: ") and problem in str(error.value)


def test_hyper_parameter_keys_keep_their_case(tmp_path):
    ini = tmp_path / "hyper.ini"
    ini.write_text("[config]\nLamb.learning_rate = 1e-4\n")
    script = generate(tmp_path, write_table(tmp_path, rank_table()), f"--hyper_parameter_config_dir={ini}")
    assert flag_values(blocks(script)[0]["command"])["Lamb.learning_rate"] == "1e-4"


def test_main_writes_the_script_or_prints_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    table_path = write_table(tmp_path, rank_table())
    argv = ["--data_dir=data", f"--hccl_config_dir={table_path}", f"--server_id={SERVERS[0]}",
            "--bind_cores=false", f"--hccn_conf={tmp_path / 'none'}"]
    launcher.main([*argv, "--dry_run=true"])
    printed = capsys.readouterr().out
    assert not (tmp_path / "distributed_cmd.sh").exists() and len(blocks(printed)) == 8
    launcher.main([*argv, "--cmd_file=cmd.sh"])
    assert (tmp_path / "cmd.sh").read_text() == printed
    assert "bash cmd.sh" in capsys.readouterr().out
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tmp_")] == []


def test_main_reports_user_errors_in_one_line_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launcher.main([f"--data_dir={tmp_path}", f"--hccl_config_dir={tmp_path / 'missing.json'}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'missing.json'}: cannot read rank table "
                                       "(No such file or directory)\n")


def test_hccl_tools_table_validates_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ips = [device_ip(0, d) for d in range(4, 8)]
    output = hccl_tools.main(["--device_num=[4,8)", "--server_ip=10.0.0.1", f"--device_ips={','.join(ips)}"])
    assert output == "hccl_4p_47_10.0.0.1.json"
    table = launcher.read_rank_table(output)
    assert table.servers[0].server_id == "10.0.0.1" and table.rank_size == 4
    assert [(d.device_id, d.device_ip, d.rank_id) for d in table.servers[0].devices] == \
        [(4 + rank, ip, rank) for rank, ip in enumerate(ips)]
    started = blocks(generate(tmp_path, output, cpu_count=16, addresses={"10.0.0.1"}))
    assert [(b["env"]["RANK_ID"], b["env"]["DEVICE_ID"], b["env"]["LOCAL_RANK"], b["command"][2])
            for b in started] == [("0", "4", "0", "0-3"), ("1", "5", "1", "4-7"), ("2", "6", "2", "8-11"),
                                  ("3", "7", "3", "12-15")]


def test_hccl_tools_reads_hccn_conf(tmp_path):
    hccn = write_hccn_conf(tmp_path, [device_ip(0, d) for d in range(DEVICES_PER_SERVER)])
    output = tmp_path / "table.json"
    hccl_tools.main(["--device_num=8", "--server_ip=10.0.0.1", f"--hccn_conf={hccn}", f"--output={output}"])
    devices = launcher.read_rank_table(output).servers[0].devices
    assert [d.device_ip for d in devices] == [device_ip(0, d) for d in range(DEVICES_PER_SERVER)]


@pytest.mark.parametrize("flags, message", [
    (["--device_num=[3,3)", "--device_ips=192.1.1.1"], "--device_num [3,3): expected a non-empty range"),
    (["--device_num=2", "--device_ips=192.1.1.1"], "--device_ips: 1 addresses for 2 devices"),
    (["--device_num=1", "--hccn_conf=/no/hccn.conf"], "--hccn_conf /no/hccn.conf: no such file"),
    (["--device_num=1", "--device_ips=not-an-ip"], "server_list[0].device[0].device_ip must be an IP address"),
    (["--device_num=1", "--device_ips=192.1.1.1", "--server_ip=host"], "--server_ip: expected an IP address"),
])
def test_hccl_tools_bad_flags_exit_2(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        hccl_tools.main(["--server_ip=10.0.0.1", f"--output={tmp_path / 't.json'}", *flags])  # the last flag wins
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def run_script(*args, cwd):
    return subprocess.run(["bash", os.path.abspath(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("args, message", [
    ((), "usage: bash scripts/run_distributed_pretrain_ascend.sh DATA_DIR RANK_TABLE_FILE"),
    (("/no/such/dir", "t.json"), "DATA_DIR '/no/such/dir' is not a directory"),
    (("/tmp", "/no/table.json"), "RANK_TABLE_FILE '/no/table.json' is not a file"),
])
def test_shell_script_bad_arguments_print_usage(tmp_path, args, message):
    result = run_script(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "usage:" in result.stderr


@pytest.mark.parametrize("dry_run", [["--dry_run=true"], ["--dry_run", "True"]])
def test_shell_script_dry_run_prints_the_commands(tmp_path, dry_run):
    table_path = write_table(tmp_path, rank_table(SERVERS))
    result = run_script(tmp_path, table_path, f"--server_id={SERVERS[1]}", "--bind_cores=false", *dry_run,
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    started = blocks(result.stdout)
    assert [block["env"]["RANK_ID"] for block in started] == [str(rank) for rank in range(8, 16)]
    assert [(block["cwd"], block["env"]["GLOG_log_dir"]) for block in started] == [
        (str(tmp_path / f"LOG{rank}"), str(tmp_path / f"LOG{rank}" / "ms_log")) for rank in range(8, 16)]
    assert not (tmp_path / "distributed_cmd.sh").exists() and not (tmp_path / "LOG8").exists()


def test_shell_script_passes_user_errors_through(tmp_path):
    table_path = write_table(tmp_path, rank_table(SERVERS))
    result = run_script(tmp_path, table_path, "--server_id=10.9.9.9", "--dry_run=true", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: --server_id 10.9.9.9: not a server of ")


def test_shell_script_runs_the_generated_file(tmp_path):
    """A stand-in for run_pretrain.py records its flags and environment, so the whole path runs without Ascend."""
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text("import os, sys\nprint(os.environ['RANK_ID'], os.environ['DEVICE_ID'], os.getcwd(),\n"
                        "      os.path.isdir(os.environ['GLOG_log_dir']), *sys.argv[1:])\n")
    table_path = write_table(tmp_path, rank_table(devices=2))
    result = run_script(tmp_path, table_path, f"--server_id={SERVERS[0]}", f"--run_script_dir={stand_in}",
                        "--bind_cores", "false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "started 2 pretraining processes" in result.stdout and (tmp_path / "distributed_cmd.sh").exists()
    logs = [tmp_path / f"LOG{rank}" / "pretraining_log.txt" for rank in range(2)]
    deadline = time.time() + STAND_IN_TIMEOUT_S
    while time.time() < deadline and not all(log.exists() and log.read_text() for log in logs):
        time.sleep(0.1)
    for rank, log in enumerate(logs):
        words = log.read_text().split()
        assert words[:4] == [str(rank), str(rank), str(tmp_path / f"LOG{rank}"), "True"]
        assert f"--output_dir={tmp_path / f'LOG{rank}'}" in words


def test_dry_run_shows_each_ranks_resolved_setup(tmp_path):
    """The zoo's Ascend run as each rank will resolve it: mixed precision (compute_type auto -> float16),
    overflow from the NPU's status registers (amp.all_finite), sinking data_sink_steps = 100 of the ini."""
    script = generate(tmp_path, write_table(tmp_path, rank_table(SERVERS)), f"--server_id={SERVERS[1]}",
                      "--bind_cores=false")
    headers = [line for line in script.splitlines() if line.startswith("# rank ")]
    assert headers == [f"# rank {rank}: device Ascend:{rank - 8}, rank {rank} of 16, compute_type float16, "
                       "overflow check amp.all_finite, data sink on (100 steps per sink)" for rank in range(8, 16)]


def test_dry_run_setup_follows_the_hyper_parameters(tmp_path):
    """An explicit compute_type and sinking switched off in the ini show in the dry run."""
    ini = tmp_path / "hyper.ini"
    ini.write_text("[config]\nenable_data_sink = false\nmodel.compute_type = float32\n")
    script = generate(tmp_path, write_table(tmp_path, rank_table()), f"--hyper_parameter_config_dir={ini}",
                      "--bind_cores=false")
    assert "# rank 0: device Ascend:0, rank 0 of 8, compute_type float32, overflow check amp.all_finite, " \
           "data sink off" in script
