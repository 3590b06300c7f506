"""A one-shot wake-up to within tens of microseconds on an asyncio event loop (Linux timerfd).

uvloop's timers (libuv) and asyncio's both wait in ``epoll_wait``, whose timeout is in whole
milliseconds, so ``call_later(0.0003, f)`` runs ``f`` up to a millisecond late. The engine must
send each order at its intended time; below saturation the gaps between orders are tens to
hundreds of microseconds. Rather than spinning the loop through each gap, :class:`FineTimer`
arms a Linux ``timerfd`` (nanosecond resolution, an hrtimer in the kernel) at an absolute
``CLOCK_MONOTONIC`` time and watches it with ``loop.add_reader``: the loop sleeps in epoll and
wakes when the timer expires, tens of microseconds late and for tens of microseconds of CPU per
wake-up instead of a whole core spent spinning (:func:`wake_cost_ns` measures both on the host;
README "Performance" has the figures and bench/engine_timer.py the benchmark).

``time.perf_counter_ns()`` is ``CLOCK_MONOTONIC`` on Linux, so its readings are valid deadlines.
:meth:`FineTimer.create` returns None where there is no timerfd (not Linux, no libc): callers
fall back to the loop's own timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    """libc with timerfd_create/timerfd_settime typed, or None without them."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_create.restype = ctypes.c_int
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        libc.timerfd_settime.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    # perf_counter_ns must be CLOCK_MONOTONIC for its readings to be timerfd deadlines
    info = time.get_clock_info("perf_counter")
    if "CLOCK_MONOTONIC" not in info.implementation:
        return None
    return libc


_LIBC = _libc()


class FineTimer:
    """One timer: :meth:`arm_at` a ``perf_counter_ns`` deadline; ``callback()`` runs once then.

    Re-arming replaces the deadline; :meth:`cancel` disarms (a wake-up already on its way is
    dropped: the timer's expiry count is reset, so the read finds nothing). Not thread-safe:
    use it on its loop's thread, like the loop's own handles.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None], fd: int
    ) -> None:
        assert _LIBC is not None
        self._loop = loop
        self._callback = callback
        self._fd = fd
        self._spec = _Itimerspec()
        self._ref = ctypes.byref(self._spec)
        self._settime = _LIBC.timerfd_settime
        self.armed = False
        loop.add_reader(fd, self._fired)

    @classmethod
    def create(
        cls, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
    ) -> FineTimer | None:
        """A timer on ``loop`` calling ``callback``, or None where timerfd is not available."""
        if _LIBC is None:
            return None
        fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            return None
        try:
            return cls(loop, callback, fd)
        except (NotImplementedError, OSError):  # a loop that cannot watch file descriptors
            os.close(fd)
            return None

    def arm_at(self, deadline_ns: int) -> None:
        """Call back once ``perf_counter_ns()`` reaches ``deadline_ns`` (> 0)."""
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(max(deadline_ns, 1), 1_000_000_000)
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, self._ref, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")
        self.armed = True

    def cancel(self) -> None:
        """Disarm: no call back until the next :meth:`arm_at`."""
        if self.armed:
            value = self._spec.it_value
            value.tv_sec = value.tv_nsec = 0  # an all-zero it_value disarms
            self._settime(self._fd, 0, self._ref, None)
            self.armed = False

    def close(self) -> None:
        """Disarm, stop watching and close the descriptor (idempotent)."""
        if self._fd < 0:
            return
        self.cancel()
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:  # disarmed or re-armed after it expired: nothing is due
            return
        self.armed = False
        self._callback()


async def wake_cost_ns(
    loop: asyncio.AbstractEventLoop, samples: int = 16, ahead_ns: int = 200_000
) -> tuple[int, int] | None:
    """This host's price of one timerfd sleep: (CPU ns per sleep and wake-up, median lateness ns).

    Arms a timer ``ahead_ns`` ahead ``samples`` times and times each cycle with the thread's
    CPU clock (the thread sleeps in epoll in between, so what it uses is the arming syscall, the
    wake-up and the read) and the lateness of each wake-up. The medians are returned; None where
    there is no timerfd. Takes about ``samples · ahead_ns`` of wall time.
    """
    fired: list[asyncio.Future[int]] = []

    def on_fire() -> None:
        if fired and not fired[-1].done():
            fired[-1].set_result(time.perf_counter_ns())

    timer = FineTimer.create(loop, on_fire)
    if timer is None:
        return None
    cpu: list[int] = []
    late: list[int] = []
    try:
        for _ in range(samples):
            fired.append(loop.create_future())
            c0 = time.thread_time_ns()
            deadline = time.perf_counter_ns() + ahead_ns
            timer.arm_at(deadline)
            woke = await fired[-1]
            cpu.append(time.thread_time_ns() - c0)
            late.append(woke - deadline)
    finally:
        timer.close()
    cpu.sort()
    late.sort()
    return cpu[len(cpu) // 2], late[len(late) // 2]
