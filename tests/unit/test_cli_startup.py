"""The `unclip-probe` command starts without the heavy stack (issue 19, item 8).

Each check runs in a fresh interpreter, so modules the test session already
imported do not hide an import. Speed itself is measured in
benchmarks/bench_cli.py, never asserted here.
"""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY = ("torch", "open_clip", "pandas", "matplotlib")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh Python; it sets ``out`` (a dict), which comes back as JSON."""
    script = f"import json, sys\n{code}\nprint('\\n' + json.dumps(out))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _heavy() -> str:
    return f"[m for m in {HEAVY!r} if m in sys.modules]"


def test_building_the_parser_imports_no_heavy_module():
    out = _run(f"import unclip_probe.cli\nunclip_probe.cli.build_parser()\nout = {{'heavy': {_heavy()}}}")
    assert out["heavy"] == []


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["generate", "--help"], 0), (["world", "--help"], 0),
                                         (["train", "--help"], 0), (["benchmark", "--help"], 0),
                                         (["benchmark", "winoground"], 2), (["generate"], 2),
                                         (["generate", "a red circle", "--n", "abc"], 2)])
def test_help_and_argument_errors_import_no_heavy_module(argv, code):
    out = _run("import contextlib, io\nfrom unclip_probe.cli import main\n"
               "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
               f"    try:\n        main({argv!r})\n        code = 0\n"
               "    except SystemExit as e:\n        code = e.code\n"
               f"out = {{'code': code, 'heavy': {_heavy()}}}")
    assert out == {"code": code, "heavy": []}


def test_the_docstring_lists_exactly_the_parsers_subcommands():
    import argparse

    from unclip_probe import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = cli.__doc__.splitlines()[0].split(":", 1)[1].strip().rstrip(".")
    assert sorted(w.strip() for w in listed.split("|")) == sorted(sub.choices)


def test_import_unclip_probe_is_lazy_but_public_names_resolve():
    out = _run("import unclip_probe\n"
               f"heavy = {_heavy()}\n"
               "from unclip_probe.clip import load_clip\n"
               "from unclip_probe.backends.world.stack import UnCLIP\n"
               "import unclip_probe.errors, unclip_probe.world, unclip_probe.probes\n"
               "out = {'heavy': heavy, 'load_clip': unclip_probe.load_clip is load_clip,\n"
               "       'UnCLIP': unclip_probe.UnCLIP is UnCLIP,\n"
               "       'ProbeInputError': unclip_probe.ProbeInputError is unclip_probe.errors.ProbeInputError,\n"
               "       'world': unclip_probe.world is sys.modules['unclip_probe.world'],\n"
               "       'probes': unclip_probe.probes is sys.modules['unclip_probe.probes'],\n"
               "       'ClipModel': unclip_probe.ClipModel.__name__,\n"
               "       'all': sorted(unclip_probe.__all__), 'dir': dir(unclip_probe)}")
    assert out["heavy"] == []
    assert out["load_clip"] and out["UnCLIP"] and out["ProbeInputError"] and out["world"] and out["probes"]
    assert out["ClipModel"] == "ClipModel"
    public = ["ClipModel", "ProbeInputError", "UnCLIP", "datasets", "load_clip", "load_stack", "manipulations",
              "metrics", "probes", "world"]
    assert out["all"] == public
    assert set(public) <= set(out["dir"])


def test_unknown_names_are_attribute_errors():
    import unclip_probe

    with pytest.raises(AttributeError, match="no_such_name"):
        unclip_probe.no_such_name  # noqa: B018


def test_load_stack_and_manipulations_resolve():
    out = _run("import unclip_probe, unclip_probe.backends, unclip_probe.manipulations\n"
               "out = {'load_stack': unclip_probe.load_stack is unclip_probe.backends.load_stack,\n"
               "       'manipulations': unclip_probe.manipulations is sys.modules['unclip_probe.manipulations']}")
    assert out == {"load_stack": True, "manipulations": True}


@pytest.mark.parametrize("flag", ["--sampler", "--prior-sampler"])
def test_an_unknown_sampler_is_one_sentence_before_anything_loads(flag, capsys):
    from unclip_probe.cli import main

    assert main(["generate", "a red circle", flag, "dpm", "--checkpoints", "/no/such/folder"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"unclip-probe generate: {flag}: got 'dpm', expected one of 'ddim', 'ddpm', 'dpm++2m'")


def test_the_cli_names_every_sampler():
    from unclip_probe.cli import SAMPLER_NAMES
    from unclip_probe.diffusion import SAMPLERS

    assert list(SAMPLER_NAMES) == list(SAMPLERS)
