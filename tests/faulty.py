"""A decoder that misbehaves on cue, run inside the real decode workers.

Files whose names contain "hang", "crash" or "hog" make the worker hang forever, die of a
signal, or allocate past its memory ceiling; every other file decodes normally. Also: files that
vanish or lose their permissions just before decoding, a slow decoder, and file access checked as
for an ordinary user even when the tests run as root (as CI does).
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from vsearch.video.decode import read_windows as real_read_windows


def read_windows(path: str, *args, **kwargs):
    name = os.path.basename(path)
    if "hang" in name:
        while True:  # like decord's get_batch on a file that over-reports its frames
            time.sleep(1)
    if "crash" in name:
        ctypes.string_at(0)  # a segfault, as in a decoder bug
    if "hog" in name:
        hoard = []
        while True:  # memory growth without bound
            hoard.append(bytearray(256 << 20))
    return real_read_windows(path, *args, **kwargs)


def vanishing_read_windows(path: str, *args, **kwargs):
    """Files named *vanish* are deleted just before decoding starts, as a user might do."""
    if "vanish" in os.path.basename(path):
        os.unlink(path)
    return real_read_windows(path, *args, **kwargs)


def slow_read_windows(path: str, *args, **kwargs):
    """Decoding that costs 0.3 s per chunk, like 4K files with long keyframe intervals."""
    for chunk in real_read_windows(path, *args, **kwargs):
        time.sleep(0.3)
        yield chunk


def killed_once_read_windows(path: str, *args, **kwargs):
    """The first file any worker reads gets that worker killed (SIGKILL, as the kernel's OOM killer
    or a person would); the marker file VSEARCH_TEST_MARKER names remembers it across workers."""
    marker = os.environ["VSEARCH_TEST_MARKER"]
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return real_read_windows(path, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)


def signalled_read_windows(path: str, *args, **kwargs):
    """Every worker is stopped by the signal VSEARCH_TEST_SIGNAL names as it starts on a file, as
    when the whole run is killed from outside or memory runs out for everyone."""
    os.kill(os.getpid(), getattr(signal, os.environ["VSEARCH_TEST_SIGNAL"]))
    time.sleep(60)  # a signal that is handled late must not let the file decode meanwhile


def killed_after_first_chunk_read_windows(path: str, *args, **kwargs):
    """The first worker to read a file is killed after handing on its first chunk; the marker file
    VSEARCH_TEST_MARKER names lets the next worker read the file whole."""
    marker = os.environ["VSEARCH_TEST_MARKER"]
    for i, chunk in enumerate(real_read_windows(path, *args, **kwargs)):
        if i == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        yield chunk


def revoked_read_windows(path: str, *args, **kwargs):
    """Just before decoding, a file named *secret* loses every permission, and one in a folder named
    *private* loses its way in (a user's chmod 000 on it, or chmod 600 on its folder, while the run
    goes on); the decoder then opens it as an ordinary user would."""
    folder = os.path.dirname(path)
    if "secret" in os.path.basename(path):
        os.chmod(path, 0)
        drop_file_capabilities()
    elif "private" in os.path.basename(folder):
        os.chmod(folder, 0o600)
        drop_file_capabilities()
    return real_read_windows(path, *args, **kwargs)


# Linux capabilities (linux/capability.h): root reads any file through these two alone.
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_file_capabilities() -> None:
    """From now on the kernel checks this thread's file access by the permission bits, as for any
    user: root's CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH leave its effective set. Capabilities
    belong to a thread on Linux, so the rest of the process keeps them. Nothing to do when not root."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


T = TypeVar("T")


def as_ordinary_user(run: Callable[[], T]) -> T:
    """`run()` in a thread of its own whose file access is checked as for an ordinary user."""
    outcome: list = []

    def target() -> None:
        try:
            drop_file_capabilities()
            outcome.append((True, run()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="ordinary-user")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
