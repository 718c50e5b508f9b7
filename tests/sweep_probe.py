"""A Hydra callback for the tuning tests, used through the command line:
``+hydra.callbacks.record._target_=tests.sweep_probe.RecordReturn``. It writes the value each job returned
(what a sweeper reads) to ``<job dir>/returned.json``; it changes nothing that is computed."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback


class RecordReturn(Callback):
    def on_job_end(self, config, job_return, **kwargs) -> None:
        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        out = Path(HydraConfig.get().runtime.output_dir) / "returned.json"
        out.write_text(json.dumps({"value": value, "status": job_return.status.name}))
