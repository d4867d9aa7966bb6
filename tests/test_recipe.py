import pytest

from edgekd.errors import ConfigError, UnknownNameError
from edgekd.recipe import list_recipes, load_recipe
from edgekd.stages import STAGES


@pytest.mark.parametrize("name", list_recipes())
def test_shipped_recipes_validate(name):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.stages
    assert all(type(s) is STAGES[s.stage] for s in recipe.stages)


def test_fast_recipe_is_small():
    fast = load_recipe("fast")
    assert fast.data.train_subset and all(s.train.epochs <= 3 for s in fast.stages if hasattr(s, "train"))


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_key_names_file_line_and_allowed_keys(tmp_path):
    path = write(tmp_path, "stages:\n  - stage: teacher\n    model: cnn\n    epochz: 3\n")
    with pytest.raises(ConfigError, match=r"r.yaml:4: stages\[0\].epochz: unknown key 'epochz' \(allowed here: .*model"):
        load_recipe(path)


def test_wrong_type_in_nested_field_names_line(tmp_path):
    path = write(tmp_path, "stages:\n  - stage: teacher\n    train:\n      epochs: many\n")
    with pytest.raises(ConfigError, match=r"r.yaml:4: stages\[0\].train.epochs: Input should be a valid integer"):
        load_recipe(path)


def test_unknown_stage_suggests_closest(tmp_path):
    path = write(tmp_path, "stages:\n  - stage: teacher\n  - stage: exprt\n")
    with pytest.raises(ConfigError, match=r"r.yaml:3: unknown stage 'exprt'. Did you mean 'export'"):
        load_recipe(path)


def test_malformed_yaml_names_line(tmp_path):
    path = write(tmp_path, "stages:\n  - stage: teacher\n    model: [cnn\n")
    with pytest.raises(ConfigError, match=r"r.yaml:\d+: not valid YAML"):
        load_recipe(path)


def test_unknown_recipe_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'fast'"):
        load_recipe("fats")
