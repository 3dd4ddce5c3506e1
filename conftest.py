"""Fixtures shared by every package's tests, and the network guard they all run under."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

# The fuzz tests (test_fuzz_*.py) draw the same cases on every run, so CI is deterministic; no
# per-example deadline on a shared machine; the autouse fixtures (one thread, the network guard)
# are harmless to share between a test's examples. Each file sets its own max_examples.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a package's own environment without the root dev group: no fuzz tests
    pass
else:
    settings.register_profile(
        "ci",
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    settings.load_profile("ci")


def _data_root() -> Path:
    override = os.environ.get("DIFFUSION_SHARED_DATA")
    return Path(override) if override else ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets in ``../shared/data`` (Fashion-MNIST, FSDD, Tiny Shakespeare,
    proteins); tests that need them are skipped, with the reason, where they are absent.
    ``DIFFUSION_SHARED_DATA`` points elsewhere."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"real data sets not found at {root} (set DIFFUSION_SHARED_DATA)")
    return root


# No network in tests: any connection, datagram or name lookup that would leave this machine
# raises NetworkAccessError and fails the test, even where the code under test swallows the
# error (a hub client that falls back to a cache). Loopback and AF_UNIX stay open: DDP tests
# rendezvous over 127.0.0.1. Python's socket layer only: subprocesses and C libraries that
# open their own sockets (gloo, libcurl) are not covered.


# Hugging Face libraries off the network before any test imports them: `datasets` otherwise
# pings S3 (a "download count") on every local parquet load. Subprocesses inherit these too.
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_UPDATE_DOWNLOAD_COUNTS="0",
    HF_HUB_DISABLE_TELEMETRY="1",
)


class NetworkAccessError(RuntimeError):
    """A test tried to reach another machine."""


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_local(host: str | bytes | None) -> bool:
    """Whether ``host`` (a name or an address) is this machine without asking a DNS server."""
    if host is None:  # getaddrinfo(None, port): this machine's own addresses
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = host.split("%", 1)[0].strip("[]").lower()  # no IPv6 zone or brackets
    if host in _LOCAL_NAMES or host == socket.gethostname().lower():
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: resolving it would query the network
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _is_address(host: str | bytes) -> bool:
    try:
        ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
    except ValueError:
        return False
    return True


class NetworkGuard:
    """The patched socket layer's record: ``attempts`` lists each blocked target since the
    last check (a test that provokes the guard on purpose clears it)."""

    error = NetworkAccessError  # for tests of the guard (a conftest is not importable)

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def block(self, what: str, target: str) -> None:
        self.attempts.append(f"{what} {target}")
        raise NetworkAccessError(
            f"{what} {target} blocked: tests must not use the network (the no_network guard in "
            "conftest.py); use local files, or a server on 127.0.0.1"
        )

    def check_address(self, sock: socket.socket, address: object, what: str) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # AF_UNIX paths, netlink: never leave the machine
        if isinstance(address, tuple) and address and not _is_local(address[0]):
            self.block(what, ":".join(str(a) for a in address[:2]))

    def check_name(self, host: str | bytes | None, what: str) -> None:
        if host is not None and not _is_local(host) and not _is_address(host):
            self.block(what, str(host))


@pytest.fixture(scope="session", autouse=True)
def _network_guard() -> Iterator[NetworkGuard]:
    """Patch the socket layer once for the session, so that module- and session-scoped
    fixtures run under the guard too."""
    guard = NetworkGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_sendto = socket.socket.sendto

    def connect(self, address):
        guard.check_address(self, address, "connection to")
        return real_connect(self, address)

    def connect_ex(self, address):
        guard.check_address(self, address, "connection to")
        return real_connect_ex(self, address)

    def sendto(self, data, *args):
        guard.check_address(self, args[-1], "datagram to")
        return real_sendto(self, data, *args)

    def lookup(function):
        def checked(host, *args, **kwargs):
            guard.check_name(host, "name lookup of")
            return function(host, *args, **kwargs)

        return checked

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket.socket, "sendto", sendto)
        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
            patch.setattr(socket, name, lookup(getattr(socket, name)))
        yield guard


@pytest.fixture(autouse=True)
def no_network(_network_guard: NetworkGuard) -> Iterator[NetworkGuard]:
    """Fail the test (at teardown) if it, or a fixture set up before it, tried to reach the
    network, whether or not the NetworkAccessError was caught."""
    yield _network_guard
    attempts, _network_guard.attempts[:] = list(_network_guard.attempts), []
    if attempts:
        pytest.fail(f"the test tried to use the network: {'; '.join(attempts)}", pytrace=False)
