"""Widget callbacks on the tiny random stack: set a control, click a button, check what changed (issue 7)."""
import asyncio

import pytest

from unclip_probe.widgets import BindingExplorer, Live, ManipulationsExplorer, PCAExplorer, TypographicExplorer

pytestmark = pytest.mark.unit


def test_live_debounces_inside_an_event_loop_and_shows_errors():
    calls = []
    live = Live(lambda: calls.append(1), delay=0.05)

    async def drag():
        for _ in range(5):  # five slider events in quick succession
            live.trigger()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)

    asyncio.run(drag())
    assert calls == [1] and live.status.value.startswith("ready")

    def broken():
        raise RuntimeError("boom")

    bad = Live(broken)
    bad.trigger()  # no loop: runs at once
    assert bad.status.value.startswith("error") and "RuntimeError: boom" in bad.errors.outputs[0]["text"]
    bad.update = lambda: None
    bad.trigger()
    assert bad.errors.outputs == () and bad.status.value.startswith("ready")  # a good update clears the error


def test_pca_slider_redraws(pipe):
    w = PCAExplorer(pipe, n_fit=50, steps=2)
    first, verdict = w.image.value, w.verdict.value
    assert first[:4] == b"\x89PNG" and "k = " in verdict
    w.k.value = w.k.options[0][1]
    assert w.image.value != first and w.verdict.value != verdict and w.live.errors.outputs == ()
    assert len(w._cache) == 2  # each k decoded once


def test_typographic_word_and_box(pipe):
    w = TypographicExplorer(pipe)
    first = w.chart.value
    w.word.value = "cross"
    assert w.chart.value != first and w.result.meta["word"] == "cross"
    w.x.value = 0.1
    assert w.result.meta["box"][0] == pytest.approx(0.1)
    w.word.value = "xylophone"  # not in the world vocabulary: said in the Output, not raised
    assert w.live.status.value.startswith("error") and "word" in w.live.errors.outputs[0]["text"]


def test_binding_button(pipe):
    w = BindingExplorer(pipe)
    first, table = w.image.value, w.table.value
    assert "a red circle and a blue square" in table
    w.s2.value = "star"
    w.go.click()
    assert w.image.value != first and "a blue star" in w.table.value
    w.c2.value = "red"
    w.go.click()  # same colours: the probe's sentence appears in the Output
    assert "prompts" in w.live.errors.outputs[0]["text"]


def test_manipulation_sliders_and_button(pipe):
    w = ManipulationsExplorer(pipe, frames=3, thetas=(0.0, 1.0), steps=2)
    interp, diff, var = w.interp_image.value, w.diff_image.value, w.var_image.value
    w.t.value = 2
    w.theta.value = 1
    w.more.click()
    assert w.interp_image.value != interp and w.diff_image.value != diff and w.var_image.value != var
    read = w.diff_image.value
    w.read_dst.value = True  # the decoder also reads the 'to' caption: the frames are sampled again
    assert w.diff_image.value != read
    w.src.value = ""  # an empty prompt: named in the text-diff Output after recompute
    w.recompute.click()
    assert w.diff_live.status.value.startswith("error")
