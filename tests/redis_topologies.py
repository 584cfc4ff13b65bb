"""Real Redis Sentinel and Cluster deployments on loopback, started by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.redis_server import RedisServer, free_port, require_binary


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class SentinelSetup:
    """A master, a replica and one Sentinel (quorum 1) watching service ``mymaster``."""

    service = "mymaster"

    def __init__(self) -> None:
        self.master = RedisServer()
        self.master.start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        binary = require_binary("redis-sentinel")
        self.dir = Path(tempfile.mkdtemp(prefix="guard-sentinel-"))
        self.port = free_port()
        config = self.dir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 500\n"
            f"sentinel failover-timeout {self.service} 2000\n"
        )
        self.process = subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL)
        sentinel = redis.Redis(port=self.port)
        wait_for(
            lambda: sentinel.execute_command("SENTINEL", "REPLICAS", self.service),
            15,
            "the sentinel to see the replica",
        )
        sentinel.close()

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}"

    def master_port(self) -> int:
        with redis.Redis(port=self.port, decode_responses=True) as sentinel:
            _, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def fail_over(self) -> None:
        """Kill the master; return once the Sentinel has promoted the replica."""
        self.master.stop()
        wait_for(lambda: self.master_port() == self.replica.port, 30, "the failover")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        for server in (self.master, self.replica):
            server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterSetup:
    """Three masters and three replicas in one Cluster."""

    def __init__(self) -> None:
        cli = require_binary("redis-cli")
        self.nodes = [
            RedisServer(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                port=cluster_port(),
            )
            for _ in range(6)
        ]
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        for node in self.nodes:
            with node.client() as client:
                wait_for(
                    lambda c=client: c.cluster("info")["cluster_state"] == "ok",
                    30,
                    "the cluster to form",
                )

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def fail_over(self, key: str) -> None:
        """Promote the replica of the master holding ``key`` (a CLUSTER FAILOVER)."""
        with self.nodes[0].client() as client:
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
            rows = client.execute_command("CLUSTER", "SLOTS")
        replica_port = next(
            int(replicas[0][1]) for start, end, _, *replicas in rows if start <= slot <= end
        )
        with redis.Redis(port=replica_port) as replica:
            replica.execute_command("CLUSTER", "FAILOVER")
            wait_for(lambda: replica.execute_command("ROLE")[0] == b"master", 30, "the failover")

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                if client.execute_command("ROLE")[0] == b"master":
                    client.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10_000 <= 65_535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10_000))
                except OSError:
                    continue
            return port
