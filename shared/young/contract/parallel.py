"""Running one function over many files: serially, in local processes, or as an MPI task farm.

Three modes, one interface (:func:`run`):

* **serial** — in this process (no overhead; what ``strun`` would do);
* **local processes** (``--jobs N``) — N persistent worker processes, one core
  each (STScI's advice: parallelise across exposures), a dead worker (e.g.
  killed by the OOM killer) fails only the file it held and is replaced;
* **MPI** (launched by ``mpiexec -n N`` or ``srun``) — every rank works; rank 0
  also runs a light dispatcher thread that hands out file indices from a
  dynamic queue, so fast and slow files balance.  Each rank runs its files
  in one child process, so a crash on one file does not take the rank (and
  with it the whole MPI job) down: the file is reported failed and the rank
  goes on.  Waiting ranks poll with short sleeps instead of MPICH's busy
  spinning, so an idle rank does not steal a core from a working one.

Tasks and the function must be picklable (module-level functions, plain data).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Callable, Sequence

#: environment variables set by MPI launchers (MPICH/Hydra, Slurm PMI2, Open MPI, PMIx)
MPI_ENV_KEYS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")

_TAG_REQ, _TAG_WORK = 11, 12


def process_rank() -> int:
    """This process's MPI rank from the launcher's environment (0 outside MPI), without importing mpi4py."""
    for k in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if k in os.environ:
            try:
                return int(os.environ[k])
            except ValueError:
                pass
    return 0


def mpi_comm():
    """``MPI.COMM_WORLD`` when launched by an MPI launcher with more than one rank, else None.

    mpi4py is imported only when a launcher's variables are present (importing
    it initialises MPI) and never when ``YOUNG_MPI=0``.
    """
    if os.environ.get("YOUNG_MPI", "1") == "0" or not any(k in os.environ for k in MPI_ENV_KEYS):
        return None
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def abort_world(code: int) -> None:
    """End every MPI rank at once when this one fails unexpectedly (no-op outside a multi-rank run).

    A rank that exits on its own leaves the others polling for its messages
    until the job's time limit: an orderly error goes through the broadcasts
    (``contract.guarded``), this is the last resort for anything else.
    """
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized() and mpi.COMM_WORLD.Get_size() > 1:
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(code)


def wait_recv(comm, source: int, tag: int, poll: float = 0.01):
    """Receive without busy-waiting (MPICH spins a core in a blocking recv)."""
    from mpi4py import MPI

    status = MPI.Status()
    while not comm.Iprobe(source=source, tag=tag, status=status):
        time.sleep(poll)
    return comm.recv(source=status.Get_source(), tag=tag)


def quiet_bcast(comm, obj=None, root: int = 0, tag: int = 99):
    """Broadcast from ``root`` with polling receivers (see :func:`wait_recv`)."""
    if comm.Get_rank() == root:
        for r in range(comm.Get_size()):
            if r != root:
                comm.send(obj, dest=r, tag=tag)
        return obj
    return wait_recv(comm, root, tag)


class WorkerSlot:
    """One persistent worker process (spawned, so no inherited MPI or thread state)."""

    def __init__(self, initializer, initargs):
        self.initializer, self.initargs = initializer, initargs
        self.pool: ProcessPoolExecutor | None = None

    def call(self, fn, *args):
        """Run ``fn(*args)`` in the worker and wait for the result."""
        return self.submit(fn, *args).result()

    def submit(self, fn, *args):
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                max_workers=1, mp_context=get_context("spawn"),
                initializer=self.initializer, initargs=self.initargs,
            )
        return self.pool.submit(fn, *args)

    def reset(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.pool = None


def run(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    on_result: Callable[[Any], None],
    *,
    jobs: int = 1,
    initializer: Callable | None = None,
    initargs: tuple = (),
    died: Callable[[Any, str], Any],
    comm=None,
    first_slot: "WorkerSlot | None" = None,
    ready: Sequence["WorkerSlot"] = (),
    keep: list | None = None,
) -> None:
    """Run ``fn`` over ``tasks``; call ``on_result`` with each result as it arrives.

    Parameters
    ----------
    fn : callable
        ``fn(task) -> result``; must not raise for expected problems (it
        returns a failed result instead).
    tasks : sequence
        Picklable tasks.  Under MPI every rank must pass the same sequence.
    on_result : callable
        Called on rank 0 / the parent process only, possibly from a helper
        thread (serialised by a lock here).
    jobs : int
        Local worker processes when not under MPI (1 = in this process).
    initializer, initargs
        Run once in each worker process (and in this process for serial).
    died : callable
        ``died(task, reason) -> result`` for a worker process that vanished.
    comm : MPI communicator, optional
        Run as an MPI task farm over its ranks.
    first_slot : WorkerSlot, optional
        An already started worker (e.g. one that did the CRDS prefetch and
        so has jwst imported) used as rank 0's / the first local worker.
    ready : sequence of WorkerSlot
        More started workers (warmed up while the prefetch ran): this rank's
        worker under MPI (the first one), the next local workers otherwise.
    keep : list, optional
        Leave the worker processes running and append them to this list (the caller closes them,
        or passes them as ``first_slot``/``ready`` to the next call): a run in phases, such as
        the tiled stage 3, then pays the workers' start-up and imports once.
    """
    lock = threading.Lock()

    def emit(result):
        with lock:
            on_result(result)

    slots = ([first_slot] if first_slot is not None else []) + list(ready)
    if comm is not None:
        for extra in slots[1:]:
            extra.close()
        _run_mpi(fn, tasks, emit, initializer, initargs, died, comm, slots[0] if slots else None, keep)
    elif jobs <= 1:
        for extra in slots:  # serial: runs here
            extra.close()
        if initializer is not None:
            initializer(*initargs)
        for t in tasks:
            emit(fn(t))
    else:
        _run_slots(fn, list(tasks), emit, jobs, initializer, initargs, died, slots, keep)


def _run_slots(fn, tasks, emit, jobs, initializer, initargs, died, started=(), keep=None):
    n = min(jobs, max(1, len(tasks)))
    started = list(started)
    for extra in started[n:]:
        if keep is None:
            extra.close()
        else:
            keep.append(extra)
    slots = started[:n] + [WorkerSlot(initializer, initargs) for _ in range(n - len(started[:n]))]
    pending = deque(tasks)
    running: dict = {}
    busy: set[int] = set()
    try:
        while pending or running:
            for i, slot in enumerate(slots):
                if i not in busy and pending:
                    task = pending.popleft()
                    running[slot.submit(fn, task)] = (i, task)
                    busy.add(i)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                i, task = running.pop(fut)
                busy.discard(i)
                try:
                    emit(fut.result())
                except BrokenProcessPool:
                    emit(died(task, "worker process died (killed or crashed) while processing it"))
                    slots[i].reset()
    finally:
        for s in slots:
            if keep is None:
                s.close()
            else:
                keep.append(s)


def _run_mpi(fn, tasks, emit, initializer, initargs, died, comm, first_slot=None, keep=None):
    rank, size = comm.Get_rank(), comm.Get_size()
    slot = first_slot if first_slot is not None else WorkerSlot(initializer, initargs)

    def work(task):
        try:
            return slot.submit(fn, task).result()
        except BrokenProcessPool:
            slot.reset()
            return died(task, f"worker process of MPI rank {rank} died (killed or crashed) while processing it")

    try:
        if rank == 0:
            queue_lock = threading.Lock()
            cursor = [0]

            def take():
                with queue_lock:
                    i = cursor[0]
                    if i >= len(tasks):
                        return None
                    cursor[0] += 1
                    return i

            def dispatcher():
                from mpi4py import MPI

                active = size - 1
                status = MPI.Status()
                while active:
                    if not comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_REQ, status=status):
                        time.sleep(0.01)
                        continue
                    src = status.Get_source()
                    result = comm.recv(source=src, tag=_TAG_REQ)
                    if result is not None:
                        emit(result)
                    i = take()
                    comm.send(i, dest=src, tag=_TAG_WORK)
                    if i is None:
                        active -= 1

            thread = threading.Thread(target=dispatcher, name="young-mpi-dispatcher", daemon=True)
            thread.start()
            while (i := take()) is not None:
                emit(work(tasks[i]))
            thread.join()
        else:
            result = None
            while True:
                comm.send(result, dest=0, tag=_TAG_REQ)
                i = wait_recv(comm, 0, _TAG_WORK)
                if i is None:
                    break
                result = work(tasks[i])
    finally:
        if keep is None:
            slot.close()
        else:
            keep.append(slot)
