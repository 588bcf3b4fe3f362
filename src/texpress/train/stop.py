"""Stopping the single-process trainer cleanly: after a time limit, or at the first Ctrl-C (the second
one aborts); the step loop then writes a checkpoint and the same command resumes."""

from __future__ import annotations

import signal
import threading
import time

from texpress.train.step_loop import say


class StopRequest:
    """Ends the loop after a checkpoint: a time limit, or the first Ctrl-C (the second one aborts)."""

    def __init__(self, time_limit: float | None) -> None:
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.reason = ""
        self._previous = None

    def __call__(self) -> bool:
        if not self.reason and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "time limit"
        return bool(self.reason)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _interrupt(self, signum, frame) -> None:
        if self.reason == "interrupted":
            raise KeyboardInterrupt
        self.reason = "interrupted"
        say("interrupted: stopping after this step with a checkpoint (Ctrl-C again to abort)")
