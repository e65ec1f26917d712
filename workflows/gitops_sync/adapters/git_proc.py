"""Git processes started with ``os.posix_spawn``, without the ``subprocess`` module.

A sync's start-up is part of every sync's time, and ``subprocess`` (with the
``threading``, ``signal``, ``selectors`` and ``locale`` it loads) is about a sixth
of what a no-op sync's interpreter executes. The git commands of the sync's common
path need none of it: an argument list, an environment, input given whole (or
nothing) and the output read back. As ``subprocess`` does, the child gets the
default action for SIGPIPE and SIGXFSZ (Python ignores them) and only the
descriptors given to it (every other one Python opens is close-on-exec). There is
no working directory and no umask: callers run git with ``-C`` and use this only for
commands that write no file of the workspace (``subprocess`` does the others).

Only ``os``, ``_signal`` and (when output is read) ``select`` are imported.
"""

from __future__ import annotations

import os
from _signal import SIGPIPE, SIGXFSZ

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_DEFAULT_SIGNALS = (SIGPIPE, SIGXFSZ)


class Spawned:
    """One process: stdin from /dev/null (or INPUT, written as the output is read),
    stdout and stderr to pipes read by ``communicate`` together (no pipe can fill).

    ``streams=True`` instead leaves a pipe to its stdin (``stdin_fd``) and one from its
    stdout (``stdout_fd``) to the caller, stderr going where this process's goes."""

    __slots__ = ("_err", "_input", "_out", "_result", "pid", "stdin_fd", "stdout_fd")

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        input: bytes | None = None,
        *,
        streams: bool = False,
    ) -> None:
        mine: list[int] = []  # the ends this process keeps
        theirs: list[int] = []  # the ends the child gets, closed here once it has them
        actions: list[tuple[object, ...]] = []
        try:
            if input is not None or streams:
                r, w = os.pipe()
                mine.append(w)
                theirs.append(r)
                actions.append((os.POSIX_SPAWN_DUP2, r, 0))
            else:
                actions.append((os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0))
            for fd in (1, 2)[: 1 if streams else 2]:
                r, w = os.pipe()
                mine.append(r)
                theirs.append(w)
                actions.append((os.POSIX_SPAWN_DUP2, w, fd))
            self.pid = os.posix_spawnp(
                argv[0], list(argv), env, file_actions=actions, setsigdef=_DEFAULT_SIGNALS
            )
        except BaseException:
            for fd in mine:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self._result: tuple[bytes, bytes, int] | None = None
        self._input = input
        self.stdin_fd = self.stdout_fd = -1
        self._out = self._err = -1
        if streams:
            self.stdin_fd, self.stdout_fd = mine
        elif input is not None:
            self.stdin_fd, self._out, self._err = mine
        else:
            self._out, self._err = mine

    def communicate(self) -> tuple[bytes, bytes, int]:
        """(stdout, stderr, exit code: negative for a signal), once the process ended."""
        if self._result is None:
            if self._out >= 0:
                out, err = self._read_all()
            else:
                out = err = b""
            _pid, status = os.waitpid(self.pid, 0)
            self._result = (out, err, os.waitstatus_to_exitcode(status))
        return self._result

    def _read_all(self) -> tuple[bytes, bytes]:
        import select

        chunks: dict[int, list[bytes]] = {self._out: [], self._err: []}
        poller = select.poll()
        for fd in chunks:
            poller.register(fd, select.POLLIN)
        left = len(chunks)
        view = memoryview(self._input or b"")
        if self.stdin_fd >= 0:
            if view:
                os.set_blocking(self.stdin_fd, False)
                poller.register(self.stdin_fd, select.POLLOUT)
                left += 1
            else:
                os.close(self.stdin_fd)
        while left:
            for fd, _event in poller.poll():
                if fd == self.stdin_fd:
                    try:
                        view = view[os.write(fd, view[: 1 << 16]) :]
                    except BrokenPipeError:
                        view = view[:0]  # git stopped reading: its exit code tells why
                    if not view:
                        poller.unregister(fd)
                        os.close(fd)
                        left -= 1
                    continue
                data = os.read(fd, 1 << 20)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    os.close(fd)
                    left -= 1
        self._input = None
        return b"".join(chunks[self._out]), b"".join(chunks[self._err])

    def __del__(self) -> None:
        # Never asked for (an error on the way): no descriptor left open, no zombie left.
        if getattr(self, "_result", ()) is None:
            self.kill()

    def kill(self) -> None:
        """End it (if it still runs) and reap it."""
        if self._result is None:
            os.kill(self.pid, 9)  # still our child (not reaped): the pid is its own
            for fd in (self.stdin_fd, self.stdout_fd):
                if fd >= 0:
                    os.close(fd)
            self.stdin_fd = self.stdout_fd = -1
            self._input = None
            self.communicate()
