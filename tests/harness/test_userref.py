"""References to a user's code: parsing, finding without importing, importing."""

from __future__ import annotations

import sys

import pytest

from harness import userref


def _package(root, name: str, body: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(body)


def test_the_two_forms_parse_and_anything_else_is_one_line():
    assert userref.parse("mypkg.models:build") == userref.Ref(
        "mypkg.models:build", "mypkg.models", "build", None
    )
    ref = userref.parse("sub/mine.py:build")
    assert (ref.module, ref.attr, ref.file, ref.top) == ("mine", "build", "sub/mine.py", "mine")
    for bad in ("mypkg.models", "mypkg:", ":build", "my-pkg:build", "sub/my-file.py:build"):
        with pytest.raises(userref.RefError):
            userref.parse(bad)


def test_a_module_is_found_and_fingerprinted_without_running_it(tmp_path):
    _package(tmp_path, "fp_pkg", "raise RuntimeError('never imported')\n")
    (tmp_path / "fp_pkg" / "__init__.py").write_text("")
    (tmp_path / "fp_pkg" / "models.py").write_text("raise RuntimeError('never imported')\n")
    dirs = [str(tmp_path)]
    before = userref.fingerprint("fp_pkg.models:build", dirs)
    assert "fp_pkg.models" not in sys.modules
    assert userref.shipped("fp_pkg.models:build", dirs) == str(tmp_path / "fp_pkg")
    (tmp_path / "fp_pkg" / "models.py").write_text("# changed\nraise RuntimeError('no')\n")
    assert userref.fingerprint("fp_pkg.models:build", dirs) != before
    with pytest.raises(userref.RefError, match="cannot import 'fp_pkg.models': RuntimeError"):
        userref.resolve("fp_pkg.models:build", dirs)


def test_the_file_form_imports_the_file_from_its_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ref_file_mod.py").write_text("def build():\n    return 7\n")
    dirs = [str(tmp_path)]
    assert userref.resolve("sub/ref_file_mod.py:build", dirs)() == 7
    assert userref.shipped("sub/ref_file_mod.py:build", dirs) == str(
        tmp_path / "sub" / "ref_file_mod.py"
    )
    with pytest.raises(userref.RefError, match="no such file"):
        userref.resolve("sub/absent.py:build", dirs)


def test_a_missing_attribute_or_a_non_callable_is_one_line(tmp_path):
    _package(tmp_path, "attr_pkg", "VALUE = 3\n")
    with pytest.raises(userref.RefError, match="has no attribute 'build'"):
        userref.resolve("attr_pkg:build", [str(tmp_path)])
    with pytest.raises(userref.RefError, match="is not a function \\(it is .int.\\)"):
        userref.resolve("attr_pkg:VALUE", [str(tmp_path)])
    with pytest.raises(userref.RefError, match="no module named 'absent_pkg'"):
        userref.fingerprint("absent_pkg:build", [str(tmp_path)])


def test_another_projects_module_of_the_same_name_does_not_stand_in(tmp_path):
    for i in (1, 2):
        _package(tmp_path / f"p{i}", "same_name_pkg", f"def f():\n    return {i}\n")
    one, two = [str(tmp_path / "p1")], [str(tmp_path / "p2")]
    assert userref.resolve("same_name_pkg:f", one)() == 1
    assert userref.resolve("same_name_pkg:f", two)() == 2
    assert userref.resolve("same_name_pkg:f", one)() == 1
    assert userref.fingerprint("same_name_pkg:f", two) != userref.fingerprint(
        "same_name_pkg:f", one
    )
