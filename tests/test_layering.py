"""Dependencies point one way: the core modules import no tool, exporter or training code.

Core is every module directly in ``maxim_tf/`` (layers, model, partition, resize, presets,
restore, image_io, metrics, hub, padding, litert, ...) except the command line (``cli.py``,
``__main__.py``). Above the core sit ``maxim_tf.conversion`` (conversion/),
``maxim_tf.export`` (export/), ``maxim_tf.training`` (training/), the tools of
``maxim_tf/tools/`` (the benchmarks) and the command line; they may import the core,
never the other way round. The imports are read with ``ast`` (nothing is imported),
including those inside functions, so a lazy import cannot hide a dependency.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "maxim_tf"
FRONT_END = {"cli.py", "__main__.py"}
FORBIDDEN = ("maxim_tf.conversion", "maxim_tf.export", "maxim_tf.training", "maxim_tf.tools",
             "maxim_tf.commands", "maxim_tf.cli", "benchmarks")
CORE = sorted(p for p in PACKAGE.glob("*.py") if p.name not in FRONT_END)
# The one sanctioned step up: an official preset is a released JAX checkpoint that
# hub.fetch_preset converts on first use, so the hub calls the converter (lazily, in
# hub._convert). The converter in turn builds on the core only (checked below), so the
# graph stays acyclic: core models <- conversion <- hub.
# The second: a preset's cache entry also gets its fast-start twin (an fp32 LiteRT export
# of the cached model, hub._with_twin); maxim_tf.export.faststart and the TFLite exporter
# it calls build on the core only.
ALLOWED = {"hub.py": ("maxim_tf.conversion", "maxim_tf.export.faststart")}
CONVERSION = sorted((PACKAGE.parent / "conversion").glob("*.py"))


def imported_names(tree):
    """``(line, dotted name)`` of every import in ``tree`` (``from a import b`` gives
    ``a.b`` too, so ``from maxim_tf import export`` is caught), and of
    ``importlib.import_module("literal")`` calls."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = ("maxim_tf." * bool(node.level)) + (node.module or "")
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def _under(name, packages):
    return any(name == f or name.startswith(f + ".") for f in packages)


def violations(path, forbidden=FORBIDDEN, allowed=()):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sorted({f"{path.parent.name}/{path.name}:{line} imports {name}"
                   for line, name in imported_names(tree)
                   if _under(name, forbidden) and not _under(name, allowed)})


def test_the_core_is_found():
    names = {p.name for p in CORE}
    assert {"layers.py", "model.py", "partition.py", "resize.py", "restore.py", "hub.py", "litert.py",
            "image_io.py"} <= names
    assert not names & FRONT_END


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_imports_no_tool_exporter_or_training(path):
    bad = violations(path, allowed=ALLOWED.get(path.name, ()))
    assert not bad, ("core modules must not import conversion/export/training/tools "
                     "(move the code up a layer, or the shared piece down into the core):\n"
                     + "\n".join(bad))


@pytest.mark.parametrize("path", CONVERSION, ids=lambda p: p.name)
def test_conversion_builds_on_the_core_only(path):
    bad = violations(path, forbidden=tuple(f for f in FORBIDDEN if f != "maxim_tf.conversion"))
    assert not bad, "conversion/ is imported by the hub: it must not import export/training/tools:\n" \
        + "\n".join(bad)


def test_the_check_catches_lazy_and_from_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from maxim_tf import export\n"
                      "    import maxim_tf.training.trainer\n"
                      "    from maxim_tf.tools.quality import run_quality\n")
    bad = violations(sample)
    assert [b.split(" imports ")[1] for b in bad] == [
        "maxim_tf.export", "maxim_tf.training.trainer", "maxim_tf.tools.quality",
        "maxim_tf.tools.quality.run_quality"]


@pytest.mark.parametrize("name", ["layers.py", "model.py"])
def test_network_calls_name_their_arguments_after_the_third(name):
    """The blocks take many arguments of one type (sizes, factors, rates, flags): a call
    in the network code passes at most three positionally, the rest by keyword."""
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
    bad = [f"{name}:{node.lineno} {ast.unparse(node.func)}(...) passes {len(node.args)} positionally"
           for node in ast.walk(tree) if isinstance(node, ast.Call) and len(node.args) > 3]
    assert not bad, "\n".join(bad)
