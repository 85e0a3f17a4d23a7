"""A first-in first-out queue of samples: arrays of any size in, any number of samples out.

The streaming stages produce audio in pieces whose sizes follow their own grids, while their
callers need exact counts (the pipeline's fixed latency, an audio callback's block)."""

from __future__ import annotations

from collections import deque

import numpy as np


class SampleFifo:
    """``put`` arrays, ``take(n)`` the oldest ``min(n, size)`` samples as one array."""

    def __init__(self) -> None:
        self._parts: deque[np.ndarray] = deque()
        self.size = 0

    def put(self, x: np.ndarray) -> None:
        if x.size:
            self._parts.append(x)
            self.size += x.size

    def take(self, n: int) -> np.ndarray:
        parts, need = [], max(0, min(n, self.size))
        self.size -= need
        while need:
            head = self._parts.popleft()
            if head.size > need:
                self._parts.appendleft(head[need:])
                head = head[:need]
            parts.append(head)
            need -= head.size
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
