"""Child processes that end with the command that started them, even when it is killed.

A process killed with SIGKILL runs no cleanup, so its children would live on
with no parent. On Linux the kernel can signal a child when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); :func:`die_with_parent` arms that in the child
between fork and exec. Elsewhere it does nothing and only normal exits clean up.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    The death signal follows the thread that forked the child, so call this
    (and start the child) from a thread that lives as long as the child should:
    the main thread of a command. Returns None where the kernel has no such signal.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(125)
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent:
            os._exit(125)

    return arm


def popen_owned(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` for a child that must not outlive this process."""
    return subprocess.Popen(list(args), preexec_fn=die_with_parent(), **kwargs)


def call_owned(args: Sequence[str], **kwargs: Any) -> int:
    """``subprocess.call`` for a child that must not outlive this process."""
    with popen_owned(args, **kwargs) as process:
        try:
            return process.wait()
        except BaseException:
            process.kill()
            raise
