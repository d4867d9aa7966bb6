"""Budget-driven compression: the fastest model within an accuracy budget, or the most accurate within
a latency budget, on the target's runtime.

Users state budgets, not recipes ("lose at most 1 point, as fast as possible on an Orin Nano").
The search builds candidates from the user's model and from students distilled from it (each
unpruned, pruned by each reduction with a uniform or global channel allocation, or low-rank
factorized; int8 with slow int8 layers float, or float), scores each with a cheap proxy (a short KD
fine-tune scored on held-out *training* images) and its latency on the target (measured side by
side where this machine stands for it, estimated from the profile elsewhere), keeps the Pareto
front, fully recovers only the finalists and checks them on the selection split (held out of the
training data). A candidate is a plan of stage objects (:mod:`edgekd.search.plans`) built by
:func:`edgekd.plan.build`, the pipeline's own step; the pick's plan is written out as the recipe that
reproduces the model, and only that run reads the report split, to grade the pick once.

A budget run is :func:`edgekd.search.run.compress_within_budget`; the loop
:func:`edgekd.search.driver.search_compression`; :class:`~edgekd.search.space.Budget` says what is asked for
(this package's import loads neither ONNX Runtime, NNCF nor torch-pruning).
"""

from edgekd.search.space import Budget, Candidate

__all__ = ["Budget", "Candidate"]
