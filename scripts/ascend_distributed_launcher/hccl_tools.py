"""Write an HCCL rank table (JSON, version 1.0) for the Ascend devices of this one server.

    python scripts/ascend_distributed_launcher/hccl_tools.py --device_num="[0,8)" [--server_ip=IP]
        [--hccn_conf=/etc/hccn.conf | --device_ips=IP,IP,...] [--output=FILE]

`--device_num` is a half-open range of device ids, "[first,end)", or a count N
meaning "[0,N)". Each device's IP comes from hccn.conf (`address_<device_id>=<ip>`)
or from --device_ips, in device order. Ranks follow device order. The table is
checked by the same validation get_distribute_pretrain_cmd.py applies.
"""

import argparse
import ipaddress
import json
import os
import re
from collections.abc import Sequence

from get_distribute_pretrain_cmd import (DEFAULT_HCCN_CONF, RANK_TABLE_VERSION, local_addresses, parse_rank_table,
                                         read_hccn_conf, write_atomically)
from src.errors import UserError, exit_on_user_error  # importable once the line above has put the repo on sys.path

DEVICE_RANGE = re.compile(r"^\[(\d+),(\d+)\)$")
RANK_TABLE_STATUS = "completed"
HOST_NIC_IP = "reserve"  # HCCL's placeholder: the host NIC is not used


class HcclToolsError(UserError):
    """A flag of hccl_tools.py, or the hccn.conf it reads, has a bad value."""


def device_ids(text: str) -> list[int]:
    """'[0,8)' or '8' -> [0, ..., 7]."""
    match = DEVICE_RANGE.match(text.replace(" ", ""))
    first, end = (int(match[1]), int(match[2])) if match else (0, int(text) if text.isdigit() else 0)
    if end <= first:
        raise HcclToolsError(f"--device_num {text}: expected a non-empty range such as [0,8) or a count such as 8")
    return list(range(first, end))


def device_ips(devices: Sequence[int], hccn_conf: str, ips_flag: str | None) -> list[str]:
    """Each device's IP: from --device_ips (comma-separated, in device order) if given, else hccn.conf."""
    if ips_flag:
        ips = [ip.strip() for ip in ips_flag.split(",")]
        if len(ips) != len(devices):
            raise HcclToolsError(f"--device_ips: {len(ips)} addresses for {len(devices)} devices")
        return ips
    if not os.path.isfile(hccn_conf):
        raise HcclToolsError(f"--hccn_conf {hccn_conf}: no such file; pass --device_ips instead")
    configured = read_hccn_conf(hccn_conf)
    missing = [device for device in devices if device not in configured]
    if missing:
        raise HcclToolsError(f"{hccn_conf}: no address_<id> line for devices {missing}")
    return [configured[device] for device in devices]


def default_server_ip() -> str:
    """This machine's first non-loopback IPv4 address."""
    candidates = sorted(ip for ip in local_addresses()
                        if ipaddress.ip_address(ip).version == 4 and not ipaddress.ip_address(ip).is_loopback)
    if not candidates:
        raise HcclToolsError("--server_ip: cannot find this machine's IP address; pass it")
    return candidates[0]


def rank_table(server_ip: str, devices: Sequence[int], ips: Sequence[str]) -> dict:
    """The rank table (a dict ready for JSON) of one server: numbers as strings, as HCCL expects."""
    return {"version": RANK_TABLE_VERSION,
            "server_count": "1",
            "server_list": [{"server_id": server_ip,
                             "device": [{"device_id": str(device), "device_ip": ip, "rank_id": str(rank)}
                                        for rank, (device, ip) in enumerate(zip(devices, ips))],
                             "host_nic_ip": HOST_NIC_IP}],
            "status": RANK_TABLE_STATUS}


def default_output(server_ip: str, devices: Sequence[int]) -> str:
    return f"hccl_{len(devices)}p_{devices[0]}{devices[-1]}_{server_ip}.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--device_num", default="[0,8)",
                        help="device ids: a half-open range \"[first,end)\" or a count N for [0,N) (default [0,8))")
    parser.add_argument("--server_ip", default=None, help="this server's IP address (default: found from the host)")
    parser.add_argument("--hccn_conf", default=DEFAULT_HCCN_CONF,
                        help="file of address_<device_id>=<ip> lines; required unless --device_ips is given")
    parser.add_argument("--device_ips", default=None, help="comma-separated device IPs, in device order")
    parser.add_argument("--output", default=None,
                        help="the JSON file to write (default hccl_<n>p_<first><last>_<server_ip>.json)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> str:

    args = parse_args(argv)
    devices = device_ids(args.device_num)
    ips = device_ips(devices, args.hccn_conf, args.device_ips)
    server_ip = args.server_ip or default_server_ip()
    try:
        ipaddress.ip_address(server_ip)
    except ValueError:
        raise HcclToolsError(f"--server_ip: expected an IP address, got {server_ip!r}") from None
    output = args.output or default_output(server_ip, devices)
    table = rank_table(server_ip, devices, ips)
    parse_rank_table(table, output)  # the launcher's own checks: bad IPs fail here, not on the cluster
    write_atomically(output, json.dumps(table, indent=4) + "\n")
    print(f"wrote {output} ({len(devices)} devices on server {server_ip})")
    return output


if __name__ == "__main__":
    main()
