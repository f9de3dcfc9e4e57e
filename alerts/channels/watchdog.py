"""A total deadline for one delivery attempt, and a way to abandon attempts from another thread.

Socket timeouts bound each read or write, not an attempt: a receiver that drip-feeds one byte every half
second keeps a 10 s read timeout satisfied for as long as it likes. A `Watchdog` bounds the whole attempt:
the channel registers every socket it opens (`track_socket`, from the thread that runs the attempt), and
the watchdog shuts them down (shutdown(2) wakes a read or write blocked in another thread at once) when
its deadline passes or when the `Abort` it runs under is aborted. The channel then sees its connection
fail and reports `reason` ("expired" or "aborted") instead of the connection error.

The watchdog keeps a duplicate of each socket's descriptor: a socket that TLS wraps (and so detaches) stays
reachable, and a closed descriptor number that the system hands out again is never shut down by mistake.
Only name resolution, which runs before there is a socket, escapes it (the system resolver's own timeout
bounds that).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Literal

Reason = Literal["expired", "aborted"]

_local = threading.local()


class Abort:
    """Abandons every attempt that runs under it (see `governing`), in any thread, when `abort()` is called.

    Attempts started after `abort()` are cut off as soon as they open a connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dogs: set[Watchdog] = set()
        self._aborted = False

    @property
    def aborted(self) -> bool:
        return self._aborted

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            dogs = list(self._dogs)
        for dog in dogs:
            dog.fire("aborted")

    @contextlib.contextmanager
    def governing(self) -> Iterator[None]:
        """Within this block, attempts started by the current thread obey this `Abort`."""
        previous = getattr(_local, "abort", None)
        _local.abort = self
        try:
            yield
        finally:
            _local.abort = previous

    def _join(self, dog: Watchdog) -> bool:
        with self._lock:
            if self._aborted:
                return False
            self._dogs.add(dog)
            return True

    def _leave(self, dog: Watchdog) -> None:
        with self._lock:
            self._dogs.discard(dog)


class Watchdog:
    """`with Watchdog(seconds) as dog:` around one attempt; sockets opened inside are cut off at the deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reason: Reason | None = None
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._abort: Abort | None = None
        self._previous: Watchdog | None = None
        self._started = time.monotonic()

    def __enter__(self) -> Watchdog:
        self._started = time.monotonic()
        self._previous = getattr(_local, "dog", None)
        _local.dog = self
        self._abort = getattr(_local, "abort", None)
        if self._abort is not None and not self._abort._join(self):
            self.fire("aborted")
        self._timer = threading.Timer(self.seconds, self.fire, args=("expired",))
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._abort is not None:
            self._abort._leave(self)
        _local.dog = self._previous
        with self._lock:
            socks, self._socks = self._socks, []
            for sock in socks:
                sock.close()

    def remaining(self) -> float:
        """Seconds left before the deadline (0 when it has passed)."""
        return max(0.0, self.seconds - (time.monotonic() - self._started))

    def check(self) -> bool:
        """True (and the deadline fired) once the deadline has passed: for loops that own no socket."""
        if self.reason is None and self.remaining() <= 0:
            self.fire("expired")
        return self.reason is not None

    def fire(self, reason: Reason) -> None:
        """Cut the attempt off: shut down every tracked socket, now and as soon as another is opened."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            for sock in self._socks:
                _shutdown(sock)

    def track(self, sock: socket.socket) -> None:
        dup = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        with self._lock:
            self._socks.append(dup)
            if self.reason is not None:
                _shutdown(dup)


def _shutdown(sock: socket.socket) -> None:
    # Under the watchdog's lock, so that a socket is never shut down while another thread closes it.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def current() -> Watchdog | None:
    """The watchdog of the attempt running in this thread, if any."""
    dog: Watchdog | None = getattr(_local, "dog", None)
    return dog


def track_socket(sock: socket.socket) -> None:
    """Put `sock` under the current attempt's watchdog (no-op outside one)."""
    dog = current()
    if dog is not None:
        dog.track(sock)
