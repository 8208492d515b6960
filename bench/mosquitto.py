"""A Mosquitto child process on a free loopback port, for the benchmarks and the tests.
It can be stopped and started again on the same port, keeping its persistence file."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
    )


@dataclass
class Mosquitto:
    binary: str
    workdir: Path
    port: int = 0
    persistence: bool = True  # tests restart the broker; benchmarks keep all in memory
    users: dict[str, str] | None = None  # user -> password; None allows anonymous clients
    unlimited: bool = True  # False keeps Mosquitto's stock in-flight and queue limits
    tls: tuple[Path, Path] | None = None  # (certificate, key): the listener speaks TLS
    host: str = "127.0.0.1"  # the address it listens on (a fault test's own link)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = self.port or free_port()
        conf = self.workdir / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if self.users is not None:
            passwords = self.workdir / "passwords"
            passwords.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            subprocess.run([f"{Path(self.binary).parent.parent}/bin/mosquitto_passwd", "-U",
                            str(passwords)], check=True)
            auth = f"allow_anonymous false\npassword_file {passwords}\n"
        limits = "max_queued_messages 0\nmax_inflight_messages 0\n" if self.unlimited else ""
        if self.tls is not None:
            auth += f"certfile {self.tls[0]}\nkeyfile {self.tls[1]}\n"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"user {getpass.getuser()}\n"  # as root, mosquitto would switch to its own user
            f"{auth}"
            f"persistence {str(self.persistence).lower()}\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            f"{limits}"
            "set_tcp_nodelay true\n"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        wait_for_port(self.port, host=self.host)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients and no final save of the persistence file;
        `start` brings it back on the same port from the last autosave."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
