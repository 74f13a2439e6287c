"""A supervisor whose children do nothing but log as fast as they can: for the fault tests of
child logging (kill -9 at random moments). Run as `python -m tests.helpers.chatter CONFIG N`.
Children import only this module and rtseg.proc, so they start fast."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from rtseg.proc import setup_child_logging, stop_on_sigterm

LINE = "chatter pid %d line %d %s"
PAD = "." * 200  # long lines: a writer spends longer inside whatever lock its transport takes


def chatter_main(stop_event: Any, heartbeat: Any, log_endpoint: str) -> None:
    """Log LINE as fast as possible, beat every 50 lines, until the stop flag is set."""
    stop_on_sigterm(stop_event.set)
    setup_child_logging(log_endpoint, "INFO")
    log, pid, n = logging.getLogger("chatter"), os.getpid(), 0
    while not stop_event.is_set():
        if n % 50 == 0:
            heartbeat.value = time.time()
        log.info(LINE, pid, n, PAD)
        n += 1


def run_supervisor(config: str, children: int) -> int:
    from rtseg.config import load_config
    from rtseg.pipeline.supervisor import Child, Supervisor

    class ChattySupervisor(Supervisor):
        def _plan(self) -> list[Child]:
            plan = []
            for i in range(children):
                hb = self.ctx.Value("d", 0.0, lock=False)
                plan.append(Child(f"chatter-{i}", chatter_main, (self.stop_event, hb, self.logs.endpoint),
                                  heartbeat=hb))
            return plan

    return ChattySupervisor(load_config(config), checkpoint=None, headless=True).run()


if __name__ == "__main__":
    logging.basicConfig(level="INFO", format="%(asctime)s %(processName)s %(name)s: %(message)s")
    raise SystemExit(run_supervisor(sys.argv[1], int(sys.argv[2])))
