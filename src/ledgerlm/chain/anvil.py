"""A local anvil node on a free loopback port, for the tests and benchmarks that need a real RPC chain."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledgerlm.chain.errors import ChainError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def anvil_node(binary: Path, *, chain_id: int = 31337, timeout: float = 30.0,
               extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start anvil (npm `@foundry-rs/anvil`), yield its URL once it accepts connections, stop it after.

    `extra_args` go to anvil as given, e.g. ("--network", "optimism") for OP Stack transaction types.
    """
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id), "--quiet",
         *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise ChainError(f"anvil did not start: {process.stderr.read().decode()[-2000:]}",
                                     status=503) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
