"""No input to the recipe or target loaders produces a traceback: only edgekd errors."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekd.errors import EdgekdError
from edgekd.recipe import parse_recipe
from edgekd.targets import TargetProfile
from edgekd.yamlschema import parse_yaml, validate

keys = st.sampled_from(["stages", "stage", "data", "name", "teacher", "export", "distill", "train", "epochs", "model",
                        "losses", "kd", "runtime", "precision", "peak", "threads", "batch_sizes", "quantization",
                        "activations", "source", "weight", "pairs"]) | st.text(string.ascii_lowercase, max_size=6)
scalars = st.none() | st.booleans() | st.integers(-5, 500) | st.floats(allow_nan=True) | st.text(max_size=8)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                         max_leaves=25)


def load_both(data, text_source="fuzz.yaml"):
    for load in (lambda: parse_recipe(data, source=text_source, lines={}),
                 lambda: validate(TargetProfile, data, source=text_source, lines={})):
        try:
            load()
        except EdgekdError:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_structured_documents_never_traceback(data):
    load_both(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=200))
def test_raw_text_never_tracebacks(text):
    try:
        data, lines = parse_yaml(text, source="fuzz.yaml")
    except EdgekdError:
        return
    load_both(data)


stage_names = st.sampled_from(["teacher", "distill", "export", "benchmark"])
stage_entries = st.tuples(stage_names, st.dictionaries(keys, documents, max_size=4)).map(lambda p: {**p[1], "stage": p[0]})
loss_entries = st.dictionaries(keys, documents, max_size=3).flatmap(
    lambda d: st.sampled_from(["kd", "dkd", "fitnets", "at", "rkd", "lit", "xx"]).map(lambda n: {**d, "name": n}))
distill_entries = st.lists(loss_entries, max_size=3).map(lambda losses: {"stage": "distill", "losses": losses})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stage_entries | distill_entries, min_size=1, max_size=4), st.dictionaries(keys, documents, max_size=3))
def test_recipes_with_real_stage_names_never_traceback(stages, data):
    load_both({"stages": stages, "data": data})
