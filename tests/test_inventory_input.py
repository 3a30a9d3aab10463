"""Whatever file a person hands the loader, the answer is an InventoryError, never a traceback."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from halab.errors import InventoryError
from halab.inventory import load_inventory
from halab.inventory.yaml_source import parse_yaml

from helpers import problems


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("cluster:\n  name: x\n nodes: [\n")
    problem = problems(bad)[0]
    assert problem.message.startswith("YAML syntax error")
    assert problem.line == 3


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "c.yaml"
    empty.write_text("# nothing here\n")
    assert problems(empty)[0].message == "the file is empty"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    problem = problems(tmp_path)[0]
    assert "is a directory" in problem.message
    assert "params/cluster.yaml" in problem.hint


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in problems(tmp_path / "nope.yaml")[0].message


def test_top_level_list(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("- a\n- b\n")
    assert "not a mapping" in problems(f)[0].message


def test_wrong_types_each_reported(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "cluster: {name: x, k3s_version: v1.32.9+k3s1, kubernetes_version: '1.32'}\n"
        "hosts: 3\nnodes: [{name: a, cpu: many}]\nnetwork: []\nstorage: {}\n"
    )
    found = {p.path: p.message for p in problems(f)}
    assert found["hosts"] == "expected a list, got number"
    assert found["nodes[0].cpu"] == "'many' is not a whole number"
    assert found["network"].startswith("expected a mapping")
    assert "required key 'host' is missing" in found["nodes[0].host"]


def test_duplicate_keys(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("cluster: {}\ncluster: {}\n")
    assert "YAML syntax error" in problems(f)[0].message


def test_self_referencing_alias(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("a: &x [*x]\n")
    with pytest.raises(InventoryError):
        load_inventory(f)


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    from halab.inventory.yaml_source import YamlReadError

    with pytest.raises(YamlReadError, match="more than"):
        parse_yaml("\n".join(lines))


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
_keys = st.sampled_from(
    [
        "cluster",
        "hosts",
        "nodes",
        "network",
        "storage",
        "apps",
        "name",
        "address",
        "kind",
        "version",
        "claims",
        "secrets",
        "gpu",
        "x",
    ]
)
_yamlish = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_yamlish)
def test_any_yaml_gives_only_inventory_error(
    doc: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    yaml = YAML(typ="safe", pure=True)
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    try:
        load_inventory(path)
    except InventoryError as exc:
        assert exc.problems and all(p.message for p in exc.problems)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_gives_only_inventory_error(
    text: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(InventoryError):
        load_inventory(path)


@settings(max_examples=100, deadline=None)
@given(
    mutation=st.tuples(
        st.sampled_from(["nodes", "hosts", "network", "storage", "apps", "claims", "cluster"]),
        _yamlish,
    )
)
def test_plan_inventory_with_one_section_replaced(
    mutation: tuple[str, object], plan_data: dict[str, object]
) -> None:
    import copy

    from halab.inventory import inventory_from_data

    key, value = mutation
    broken = copy.deepcopy(plan_data)
    broken[key] = value
    with contextlib.suppress(InventoryError):
        inventory_from_data(broken)
