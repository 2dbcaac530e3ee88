"""The worker pool every replica runs: takes jobs, keeps their leases alive, runs each one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from gateway.errors import GatewayError
from gateway.jobs import TERMINAL, JobStore
from gateway.jobs.run import JobRun
from gateway.models import Deps

log = logging.getLogger("gateway.jobs")


class WorkerPool:
    def __init__(self, deps: Deps, jobs: JobStore) -> None:
        self.deps = deps
        self.jobs = jobs
        settings = deps.settings.jobs
        self.size = settings.workers
        self.lease_ms = int(settings.lease_s * 1000)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.running: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None

    def start(self) -> None:
        if self.size > 0:
            self._loops = [
                asyncio.create_task(self._take_loop()),
                asyncio.create_task(self._lease_loop()),
            ]

    async def stop(self, grace_s: float) -> None:
        """Take no more jobs; give running ones `grace_s`, then hand the rest back.

        Both the drain and the app's cleanup call this; the second call waits for the first.
        """
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop(grace_s))
        await asyncio.shield(self._stopped)

    async def _stop(self, grace_s: float) -> None:
        self._stopping = True
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=grace_s)
        for job_id, task in list(self.running.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(GatewayError):
                await self.jobs.release(self.consumer, job_id)

    async def _take_loop(self) -> None:
        # Often enough that a job handed back at shutdown is taken within a second.
        reclaim_every = min(max(self.lease_ms / 2000, 0.2), 1.0)
        next_reclaim = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            free = self.size - len(self.running)
            if free <= 0:
                await asyncio.wait(
                    list(self.running.values()), timeout=1, return_when=asyncio.FIRST_COMPLETED
                )
                continue
            try:
                ids: list[str] = []
                if loop.time() >= next_reclaim:
                    next_reclaim = loop.time() + reclaim_every
                    ids = await self.jobs.reclaim(self.consumer, self.lease_ms, free)
                if len(ids) < free:
                    ids += await self.jobs.take(
                        self.consumer, free - len(ids), int(reclaim_every * 1000)
                    )
            except GatewayError as exc:
                log.warning("job queue unavailable: %s", exc.message)
                await asyncio.sleep(1)
                continue
            except Exception:
                # The loop must outlive any one bad answer, or this replica stops taking jobs.
                log.exception("job queue read failed")
                await asyncio.sleep(1)
                continue
            for job_id in ids:
                if job_id not in self.running:
                    self.running[job_id] = asyncio.create_task(self._run(job_id))

    async def _lease_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.lease_ms / 3000)
            if self.running:
                try:
                    await self.jobs.heartbeat(self.consumer, list(self.running))
                except GatewayError as exc:
                    log.warning("job heartbeat failed: %s", exc.message)
                except Exception:
                    log.exception("job heartbeat failed")

    async def _run(self, job_id: str) -> None:
        try:
            job = await self.jobs.get_job(job_id)
            if job is not None and await self.jobs.status(job_id) not in TERMINAL:
                run = JobRun(self.deps, self.jobs, job_id, job)
                await run.run()
                await run.settle()
            await self.jobs.done(job_id)
        except asyncio.CancelledError:
            raise
        except GatewayError as exc:
            # The store failed: the job stays pending, and runs again once its lease lapses.
            log.warning("job %s stopped, to run again: %s", job_id, exc.message)
        except Exception:
            log.exception("job %s crashed", job_id)
        finally:
            self.running.pop(job_id, None)
