"""The methods (``method=``): each one's recipe and the phases it trains at the top of the run folder (their
checkpoints: ``<run_dir>/<phase>/``); ``run(job)`` runs the configured one."""

from __future__ import annotations

from sdnn.auto import auto
from sdnn.config import Method
from sdnn.figures import with_accuracy_figure
from sdnn.job import Job, Recipe
from sdnn.pipeline import baseline, class2str, reweight, sdnn
from sdnn.results import Results

RECIPES = {Method.baseline: Recipe(baseline, ("baseline",)), Method.sdnn: Recipe(sdnn, ("phase1", "phase2")),
           Method.reweight: Recipe(reweight, ("phase1", "reweight")),
           Method.class2str: Recipe(class2str, ("phase1", "class2str")),
           Method.auto: Recipe(auto, ("phase1",))}  # each candidate trains in <run_dir>/auto/<candidate>/


def run(job: Job) -> Results:
    return with_accuracy_figure(job, RECIPES[job.method].run(job))
