"""The fixed intra-op thread count every encode and decode runs under.

oneDNN picks how to split a convolution's sums by the number of threads: on small feature maps
(an 8 x 8 latent) a 3 x 3 conv and GDN's 1 x 1 conv give different last bits with 1 and 2 threads,
which rounds a decoded pixel, or a latent near .5, the other way. So coding runs under
CODING_THREADS whatever the process uses: the same file gives the same pixels, and the same image
the same bytes, on any machine with the same instruction set. Parallelism comes from coding several
images at once (bulk jobs, one per core), as JPEG and WebP tools do.

The thread count is a process-wide setting: concurrent coders (threads of a server) share one
pinned section, and the count is restored when the last of them leaves.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

CODING_THREADS = 1

_lock = threading.Lock()
_inside = 0
_saved = 0


@contextmanager
def coding_threads() -> Iterator[None]:
    """Run the body under CODING_THREADS intra-op threads (re-entrant, thread-safe)."""
    global _inside, _saved
    with _lock:
        if _inside == 0:
            _saved = torch.get_num_threads()
            torch.set_num_threads(CODING_THREADS)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                torch.set_num_threads(_saved)
