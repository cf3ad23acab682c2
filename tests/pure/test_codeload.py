"""current_class: a class after its module was re-executed."""

from __future__ import annotations

import sys
import types

from shoal import GenServer
from shoal.runtime.codeload import current_class


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def test_a_class_is_looked_up_again_by_module_and_name() -> None:
    source = "from shoal import GenServer\nclass W(GenServer):\n    class Inner(GenServer): ...\n"
    first = _module("codeload_case_a", source)
    old, old_inner = first.W, first.W.Inner
    try:
        exec(compile(source, "<again>", "exec"), first.__dict__)  # a reload
        assert current_class(old) is first.W and first.W is not old
        assert current_class(old_inner) is first.W.Inner and first.W.Inner is not old_inner
    finally:
        del sys.modules["codeload_case_a"]


def test_a_class_whose_name_is_gone_or_rebound_stays_itself() -> None:
    module = _module("codeload_case_b", "from shoal import GenServer\nclass W(GenServer): ...\n")
    old = module.W
    try:
        module.W = 42
        assert current_class(old) is old
        module.W = type("W", (object,), {})  # no longer a GenServer
        assert current_class(old) is old
        del module.W
        assert current_class(old) is old
    finally:
        del sys.modules["codeload_case_b"]


def test_a_local_class_is_itself() -> None:
    class Local(GenServer): ...

    assert current_class(Local) is Local
