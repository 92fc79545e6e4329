"""Jobs: background work (retraining cycles) queued in the store and run by one executor interface,
in threads of the local process or as Ray tasks.

`queue.py`: `Jobs` (`ws.jobs`), enqueue with de-duplication, dispatch of claimed jobs to the
executor, heartbeats, recovery of jobs whose worker died. `executors.py`: `LocalExecutor`,
`RayExecutor`. What each job kind does (keel.workspace.handlers) and the tick of the background
loop (keel.workspace.tick) are composition: they live in keel.workspace, which hands `Jobs` the
kinds and the runner.
May import: keel.storage (through the Workspace's MetadataStore), keel.entities, keel.errors,
keel.settings, keel._optional; it reaches records only through the Workspace a job opens.
"""

from keel.jobs.executors import Executor, LocalExecutor, RayExecutor, make_executor
from keel.jobs.queue import Jobs

__all__ = ["Jobs", "Executor", "LocalExecutor", "RayExecutor", "make_executor"]
