"""int8 quantization: NNCF PTQ in the target's Q/DQ scheme, accuracy control, QAT with KD, Q/DQ rules.

``quantize_model(model, calibration, scheme=...)`` (:mod:`edgekd.quantize.int8`) is the one call;
the ``quantize`` stage (:mod:`edgekd.stages.quantize`) adds the validation budget, the QAT fallback
and side-by-side timing around it.
"""
