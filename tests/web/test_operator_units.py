"""The pure parts under the dashboard and admin API: frps's counters, the proxy conf Go frps
shows, and the v1 export of the model."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pyfrp.config.export import proxy_to_v1, visitor_to_v1
from pyfrp.config.load import proxy_from_v1, visitor_from_v1
from pyfrp.proto.msg import NewProxy
from pyfrp.server.dashboard import proxy_conf
from pyfrp.server.stats import DateCounter, Stats


def test_date_counter_keeps_seven_days_and_a_monotonic_total() -> None:
    c = DateCounter()
    day = dt.date(2026, 12, 1)
    for i in range(10):
        c.add(i + 1, today=day + dt.timedelta(days=i))
    last = day + dt.timedelta(days=9)
    assert c.last_days(7, today=last) == [10, 9, 8, 7, 6, 5, 4]
    assert c.total() == sum(range(1, 11))  # Prometheus counters never go down
    assert len(c._days) <= 8


def test_stats_clients_and_offline_proxies() -> None:
    s = Stats()
    s.client_online("", "", "run1", "gpu1", "10.0.0.1", "0.70.1")
    s.client_online("lab", "box", "run2", "gpu2", "10.0.0.2", "0.70.1")
    assert s.client_count == 2
    assert set(s.clients) == {"run1", "lab.box"}
    s.client_offline("run1")  # no client id: forgotten, as frps does
    s.client_offline("run2")  # an id: kept, offline
    assert set(s.clients) == {"lab.box"}
    assert (s.clients["lab.box"].online, s.client_count) == (False, 0)

    s.proxy_opened("ssh", "tcp", "lab", "box")
    s.conn_opened("ssh")
    s.conn_closed("ssh", 100, 40)
    assert (s.cur_conns, s.traffic_in.today(), s.traffic_out.today()) == (0, 100, 40)
    assert s.clear_offline() == (0, 1)  # online: kept
    s.proxy_closed("ssh", "tcp")
    assert s.type_counts["tcp"] == 0
    assert s.clear_offline(dt.timedelta(days=7)) == (0, 1)  # offline only just now
    assert s.clear_offline() == (1, 1)


def test_stats_of_several_workers_merge_as_one_frps() -> None:
    """pyfrp.workers: a proxy that moved to another worker on a reconnect shows once, in its
    latest state, with the traffic of both; counts add up; a JSON round trip loses nothing."""
    a, b = Stats(), Stats()
    a.client_online("lab", "gpu1", "run-a", "gpu1", "10.0.0.1", "0.70.1")
    a.proxy_opened("ssh", "tcp", "lab", "gpu1")
    a.conn_opened("ssh")
    a.conn_closed("ssh", 100, 200)
    a.proxy_closed("ssh", "tcp")
    a.client_offline("run-a")
    b.client_online("lab", "gpu1", "run-b", "gpu1", "10.0.0.1", "0.70.1")
    b.proxy_opened("ssh", "tcp", "lab", "gpu1")
    b.conn_opened("ssh")
    b.conn_closed("ssh", 1, 2)
    b.conn_opened("ssh")
    b.client_online("lab", "gpu2", "run-c", "gpu2", "10.0.0.2", "0.70.1")
    b.proxy_opened("web", "http", "lab", "gpu2")
    online = {"ssh": NewProxy(proxy_name="ssh", proxy_type="tcp", remote_port=6000)}
    merged, registered = Stats.merged(
        [json.loads(json.dumps(a.dump({}))), json.loads(json.dumps(b.dump(online)))]
    )
    assert merged.client_count == 2
    assert merged.clients["lab.gpu1"].run_id == "run-b"
    assert merged.clients["lab.gpu1"].online
    assert merged.type_counts == {"tcp": 1, "http": 1}
    ssh = merged.proxies["ssh"]
    assert not ssh.offline
    assert (ssh.traffic_in.today(), ssh.traffic_out.total(), ssh.cur_conns) == (101, 202, 1)
    assert (merged.traffic_in.today(), merged.cur_conns) == (101, 1)
    assert registered["ssh"].remote_port == 6000


def test_proxy_conf_is_go_frps_json() -> None:
    """Byte for byte what Go frps 0.70.1 answered for the same NewProxy (captured)."""
    tcp = NewProxy(
        proxy_name="ssh", proxy_type="tcp", use_encryption=True, remote_port=17022,
        annotations={"a": "b"}, metas={"m": "n"},
    )  # fmt: skip
    assert json.dumps(proxy_conf(tcp), separators=(",", ":")) == (
        '{"name":"ssh","type":"tcp","annotations":{"a":"b"},"transport":{"useEncryption":true,'
        '"bandwidthLimit":"","bandwidthLimitMode":"client"},"metadatas":{"m":"n"},'
        '"loadBalancer":{"group":""},"healthCheck":{"type":"","intervalSeconds":0},'
        '"localIP":"127.0.0.1","plugin":null,"remotePort":17022}'
    )
    http = NewProxy(proxy_name="web", proxy_type="http", subdomain="jup")
    assert json.dumps(proxy_conf(http), separators=(",", ":")) == (
        '{"name":"web","type":"http","transport":{"bandwidthLimit":"","bandwidthLimitMode":'
        '"client"},"loadBalancer":{"group":""},"healthCheck":{"type":"","intervalSeconds":0},'
        '"localIP":"127.0.0.1","plugin":null,"subdomain":"jup","locations":null,'
        '"hostHeaderRewrite":""}'
    )


@pytest.mark.parametrize(
    "table",
    [
        {"name": "a", "type": "tcp", "localPort": 22, "remotePort": 6000},
        {"name": "b", "type": "udp", "localIP": "10.0.0.5", "localPort": 53},
        {
            "name": "c",
            "type": "http",
            "localPort": 8888,
            "subdomain": "jup",
            "locations": ["/", "/lab"],
            "requestHeaders": {"set": {"x-a": "1"}},
            "transport": {"useEncryption": True, "useCompression": True},
        },
        {"name": "d", "type": "https", "localPort": 443, "customDomains": ["a.example"]},
        {
            "name": "e",
            "type": "tcpmux",
            "localPort": 22,
            "customDomains": ["t.example"],
            "multiplexer": "httpconnect",
            "annotations": {"k": "v"},
        },
        {"name": "f", "type": "stcp", "localPort": 22, "secretKey": "k", "allowUsers": ["*"]},
        {
            "name": "g",
            "type": "xtcp",
            "localPort": 22,
            "secretKey": "k",
            "natTraversal": {"disableAssistedAddrs": True},
        },
    ],
    ids=lambda t: t["type"],
)
def test_proxy_export_round_trips(table: dict[str, object]) -> None:
    p = proxy_from_v1(table, "t")
    assert proxy_from_v1(proxy_to_v1(p), "t") == p


def test_visitor_export_round_trips() -> None:
    v = visitor_from_v1(
        {"name": "v", "type": "xtcp", "serverName": "s", "secretKey": "k", "bindPort": 9000,
         "keepTunnelOpen": True, "fallbackTo": "w"}, "t",
    )  # fmt: skip
    assert visitor_from_v1(visitor_to_v1(v), "t") == v


def test_virtual_net_plugins_survive_the_store() -> None:
    """A visitor's or proxy's virtual_net plugin is kept by /api/config and the store file."""
    v = visitor_from_v1(
        {"name": "v", "type": "stcp", "serverName": "s", "secretKey": "k", "bindPort": -1,
         "plugin": {"type": "virtual_net", "destinationIP": "100.86.0.1"}}, "t",
    )  # fmt: skip
    assert visitor_to_v1(v)["plugin"] == {"type": "virtual_net", "destinationIP": "100.86.0.1"}
    assert visitor_from_v1(visitor_to_v1(v), "t") == v
    p = proxy_from_v1(
        {"name": "p", "type": "stcp", "secretKey": "k", "plugin": {"type": "virtual_net"}}, "t"
    )
    assert proxy_to_v1(p)["plugin"] == {"type": "virtual_net"}
