"""Run ``pgsched`` with this process's clock shifted: ``python -m tests.skewed SECONDS ARGS``.

Every read of the local clock in pgsched goes through ``pgsched.clock.local_now`` (one seam,
invariant 7), so shifting it is what a machine whose clock is off looks like to pgsched.
libfaketime would shift the whole process, but under it Python's ``time.sleep`` fails with
EINVAL (its absolute-deadline ``clock_nanosleep`` is rewritten wrongly).
"""

from __future__ import annotations

import runpy
import sys
from datetime import timedelta

from pgsched import clock

if __name__ == "__main__":
    skew = timedelta(seconds=float(sys.argv[1]))
    real = clock.local_now
    clock.local_now = lambda: real() + skew
    sys.argv = ["pgsched", *sys.argv[2:]]
    runpy.run_module("pgsched", run_name="__main__", alter_sys=True)
