"""The Azurite the project starts: one process per service, each its own session, all stopped."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from gitops_sync.adapters import azurite as azurite_mod
from gitops_sync.adapters.azurite import Azurite

pytestmark = [pytest.mark.azurite]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def _roundtrip(conn: str) -> None:
    """A table entity and a queue message, written and read back."""
    tables = TableServiceClient.from_connection_string(conn)
    table = tables.create_table_if_not_exists("probe")
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
    assert 1 == table.get_entity("p", "r")["v"]
    queue = QueueServiceClient.from_connection_string(conn).get_queue_client("probe")
    queue.create_queue()
    queue.send_message("hello")
    assert ["hello"] == [m.content for m in queue.receive_messages()]


def test_each_service_runs_as_its_own_process_and_stop_ends_them_all() -> None:
    """blob, queue and table each in a process (and session) of its own, on the ports the
    connection string names; one Node thread per service, not one for all three."""
    with Azurite() as az:
        pids = az.pids
        assert 3 == len(pids)
        assert len({os.getsid(p) for p in pids}) == 3 and all(os.getsid(p) == p for p in pids)
        services = sorted(_cmdline(p).split("/azurite-")[1].split()[0] for p in pids)
        assert ["blob", "queue", "table"] == services
        for svc in ("blob", "queue", "table"):
            assert f"127.0.0.1:{az.ports[svc]}" in az.connection_string
        _roundtrip(az.connection_string)
    assert [] == [p for p in pids if _alive(p)]


def test_one_process_for_all_three_when_asked() -> None:
    """``split=False``: the single ``azurite`` process serves all three services."""
    with Azurite(split=False) as az:
        assert 1 == len(az.pids)
        assert "--tablePort" in _cmdline(az.pids[0])
        _roundtrip(az.connection_string)


def test_a_table_port_taken_meanwhile_is_replaced_by_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """azurite-table does not report the port it got, so it is given one; when that one
    is taken before the table process binds it, another is tried."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    offered: list[int] = []
    real = azurite_mod._free_port

    def free_port(host: str) -> int:
        port = taken if not offered else real(host)
        offered.append(port)
        return port

    monkeypatch.setattr(azurite_mod, "_free_port", free_port)
    try:
        with Azurite() as az:
            assert 2 == len(offered) and offered[0] == taken
            assert offered[1] == az.ports["table"] != taken
            _roundtrip(az.connection_string)
    finally:
        holder.close()


def test_data_on_disk_survives_a_stop_and_start_on_the_same_ports(tmp_path: Path) -> None:
    """Each service saves its data when stopped (azurite-table only on SIGINT)."""
    with Azurite(location=tmp_path) as az:
        ports = dict(az.ports)
        table = TableServiceClient.from_connection_string(az.connection_string)
        table.create_table("kept").create_entity({"PartitionKey": "p", "RowKey": "r"})
        queue = QueueServiceClient.from_connection_string(az.connection_string)
        queue.create_queue("kept").send_message("m")
    with Azurite(location=tmp_path, ports=ports) as az:
        table = TableServiceClient.from_connection_string(az.connection_string)
        assert "r" == table.get_table_client("kept").get_entity("p", "r")["RowKey"]
        q = QueueServiceClient.from_connection_string(az.connection_string)
        assert ["m"] == [m.content for m in q.get_queue_client("kept").receive_messages()]
