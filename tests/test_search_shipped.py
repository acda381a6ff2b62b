"""Where a named search space or recipe is found: a path, then ./search_spaces or ./studies, then nasprune's own."""

from __future__ import annotations

import pytest

from nasprune.errors import NaspruneError
from nasprune.search import recipe as recipe_module
from nasprune.search.recipe import find_recipe
from nasprune.search.shipped import RECIPES, SPACES, Shelf
from nasprune.search.space import find_space


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory with no search_spaces/ or studies/ in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bare_names_fall_back_to_the_shipped_files(elsewhere):
    assert find_space("fd_mobilenet") == SPACES.shipped() / "fd_mobilenet.yaml"
    assert find_recipe(None) == find_recipe("quickstart") == RECIPES.shipped() / "quickstart.yaml"
    assert SPACES.names() == ["fd_mobilenet", "mobilenet_v3", "mobilenets"] and RECIPES.names() == ["quickstart"]


def test_the_working_directory_comes_before_the_shipped_files(elsewhere):
    (elsewhere / "search_spaces").mkdir()
    (elsewhere / "studies").mkdir()
    mine = elsewhere / "search_spaces" / "fd_mobilenet.yaml"
    mine.write_text("family: dws\n")
    (elsewhere / "studies" / "quickstart.yaml").write_text("budget_mflops: 3\n")
    (elsewhere / "studies" / "mine.yaml").write_text("budget_mflops: 3\n")
    assert find_space("fd_mobilenet") == mine
    assert find_recipe(None) == elsewhere / "studies" / "quickstart.yaml"
    assert RECIPES.names() == ["mine", "quickstart"]
    # an explicit path (beside the recipe, or from the working directory) comes first of all
    beside = elsewhere / "recipes" / "fd_mobilenet"
    beside.parent.mkdir()
    beside.write_text("family: dws\n")
    assert find_space("fd_mobilenet", relative_to=beside.parent) == beside


def test_not_found_names_what_was_tried_and_what_exists(elsewhere):
    with pytest.raises(NaspruneError, match=r"^space 'nope' not found \(tried .*/search_spaces/nope\.yaml.*\): "
                                            r"expected a YAML file or one of fd_mobilenet, mobilenet_v3, mobilenets$"):
        find_space("nope")
    with pytest.raises(NaspruneError, match=r"^recipe 'nope\.yaml' not found \(tried nope\.yaml\): .* quickstart$"):
        find_recipe("nope.yaml")


def test_no_recipe_given_is_named_quickstart_when_missing(elsewhere, monkeypatch):
    # a shelf that ships spaces but no recipes: the default recipe is missing, and the message says which one
    monkeypatch.setattr(recipe_module, "RECIPES", Shelf(what="recipe", folder="studies", package=SPACES.package))
    with pytest.raises(NaspruneError,
                       match=r"^recipe 'quickstart' not found .*one of fd_mobilenet, mobilenet_v3, mobilenets$"):
        find_recipe(None)


def test_a_missing_package_means_no_shipped_files(elsewhere):
    shelf = Shelf(what="space", folder="search_spaces", package="nasprune.no_such_folder")
    assert shelf.shipped() is None and shelf.folders() == [elsewhere / "search_spaces"]
    with pytest.raises(NaspruneError, match="one of the files in search_spaces/ .none found"):
        shelf.find("fd_mobilenet", [])
