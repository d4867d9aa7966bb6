"""Low-rank factorization: layer decompositions (SVD, spatial SVD, Tucker-2), MAC accounting
and rank selection. The ``factorize`` stage (:mod:`edgekd.stages.factorize`) chains them with
KD recovery.
"""
