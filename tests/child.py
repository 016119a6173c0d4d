"""Child processes a test starts itself (a worker, a sink, an endpoint): stopped for sure."""

from __future__ import annotations

import subprocess


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (a graceful leave); SIGKILL if it has not exited within `timeout_s`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
