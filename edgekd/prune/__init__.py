"""Pruning: structured channel removal (torch-pruning), importance criteria, 2:4 sparsity.

The ``prune`` stage (:mod:`edgekd.stages.prune`) chains them with KD recovery.
"""
