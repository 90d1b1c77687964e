"""The lecture slides (docs/slides.py) in Chromium: offline, every slide shown, math typeset, notes kept.

The decks are built afresh into a temporary folder (``docs/slides.py --no-pdf``: about 10 s), so
the test never depends on an earlier ``make slides`` or on the network, and are served from
127.0.0.1. Each deck is opened and walked slide by slide; the test fails on

* a request to another host, a failed request or an HTTP error (the folder must work offline);
* a page error or a console error;
* a slide count other than the notebook's cut, an empty slide (no visible text or image), or a
  slide whose content is still taller than the slide once shrunk to fit (75 %);
* raw TeX left in the prose, or math MathJax did not draw;
* a cell tagged ``solution`` or ``colab-setup`` in the deck, or speaker notes missing for the
  notebook's ``notes`` cells; and the speaker view (key ``s``) must open and show them.

One screenshot per deck, of its first slide with a figure: ``artifacts/slides_<lesson>.png``.
The notebooks come from ``notebooks/``, or from ``UNET_LESSONS_SLIDES_NOTEBOOKS`` (a folder). They
need their lecture cut (slide metadata): without one, a deck is one slide too tall to show.
About 40 s for the ten lessons on 2 cores, the build included.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from labdriver import REPO, tempdir

NOTEBOOKS = Path(os.environ.get("UNET_LESSONS_SLIDES_NOTEBOOKS", REPO / "notebooks"))
#: Cells no deck may show, by tag (issue 33); kept apart from docs/slides.py's own list on purpose.
LEFT_OUT = ("solution", "colab-setup")


def _slides_module():
    spec = importlib.util.spec_from_file_location("unet_lessons_slides", REPO / "docs" / "slides.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


slides = _slides_module()
LESSONS = sorted(path.name for path in NOTEBOOKS.glob(slides.LESSON_GLOB))

# Walks every slide in the page itself (one round trip a deck): after each move, waits until the
# deck has settled (math redrawn, slide fitted), two frames have passed and their fonts are in.
WALK_JS = """async () => {
  const frame = document.querySelector(".reveal .slides");
  const settled = () => new Promise(resolve => {
    const check = () => (window.slidesSettled && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0)
      ? resolve() : setTimeout(check, 10);
    check();
  });
  const frames = () => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const shown = element => { const box = element.getBoundingClientRect(); return box.width > 0 && box.height > 0; };
  const found = [];
  for (const slide of Reveal.getSlides()) {
    const at = Reveal.getIndices(slide);
    Reveal.slide(at.h, at.v);
    await settled(); await frames(); await document.fonts.ready; await settled();
    const box = slide.getBoundingClientRect(), room = frame.getBoundingClientRect();
    const prose = [...slide.querySelectorAll(".jp-RenderedMarkdown")].map(element => element.innerText).join("\\n");
    found.push({
      at: `${at.h}/${at.v}`,
      head: slide.innerText.trim().slice(0, 60),
      text: slide.innerText.trim().length,
      images: [...slide.querySelectorAll("img")].filter(image => image.naturalWidth > 0 && shown(image)).length,
      overflow: (box.bottom - room.bottom) / room.height,
      rawTex: prose.match(/\\$[^$\\n]+\\$|\\\\\\(|\\\\\\[|\\\\begin\\{/g) || [],
      math: [...slide.querySelectorAll('script[type^="math/tex"]')].filter(tex => !tex.closest("aside.notes")).length,
      drawn: [...slide.querySelectorAll(".MathJax_CHTML")].filter(shown).length,
      mathErrors: slide.querySelectorAll(".mjx-merror, .MathJax_Error").length,
    });
  }
  return found;
}"""


@pytest.fixture(scope="module")
def built():
    """The decks of every lesson, built into a temporary folder; {lesson: Deck}."""
    out = tempdir("unet-lessons-slides-")
    try:
        decks = slides.build(NOTEBOOKS, out, pdf=False)
        yield out, {deck.notebook.name: deck for deck in decks}
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def slides_browser(built, chromium):
    """The run's Chromium and the decks' folder served on 127.0.0.1."""
    with slides.Server(built[0]) as server:
        yield chromium, server


class Recorder:
    """Every request, failure and error of a browser context (pop-ups included)."""

    def __init__(self, context, base: str) -> None:
        self.base, self.problems = base, []
        context.on("request", self._request)
        context.on("requestfailed", lambda request: self.problems.append(
            f"request failed: {request.url} ({request.failure})"))
        context.on("response", lambda response: response.status >= 400 and self.problems.append(
            f"HTTP {response.status}: {response.url}"))
        context.on("page", self.watch)

    def _request(self, request) -> None:
        if not (request.url.startswith(self.base + "/") or request.url.startswith(("data:", "about:"))):
            self.problems.append(f"request to another host: {request.url}")

    def watch(self, page) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", lambda message: message.type == "error" and self.problems.append(
            f"console error: {message.text}"))


def _open(browser, server, name: str):
    context = browser.new_context(viewport={"width": slides.WIDTH, "height": slides.HEIGHT}, device_scale_factor=1)
    context.set_default_timeout(30_000)
    recorder = Recorder(context, server.url)
    page = context.new_page()
    try:
        page.goto(f"{server.url}/{name}")
        page.wait_for_function(slides.READY_JS, timeout=20_000)
    except Exception as error:  # noqa: BLE001 - reported with what the page did
        context.close()
        pytest.fail(f"{name} did not start ({type(error).__name__}):\n" + "\n".join(recorder.problems))
    return context, page, recorder


def _removed_lines(notebook) -> list[str]:
    """The longest source line of each cell the slides must leave out."""
    return [max(cell.source.splitlines(), key=len).strip() for cell in notebook.cells
            if set(cell.metadata.get("tags", [])) & set(LEFT_OUT) and cell.source.strip()]


@pytest.mark.parametrize("lesson", LESSONS)
def test_deck_offline_complete_and_readable(lesson, built, slides_browser, artifacts):
    out, decks = built
    browser, server = slides_browser
    deck = decks[lesson]
    notebook = nbformat.read(NOTEBOOKS / lesson, as_version=4)
    cut = slides.lecture_cut(notebook)
    expected_notes = sum(slides.slide_type(cell) == "notes" and bool(cell.source.strip()) for cell in cut.cells)

    context, page, recorder = _open(browser, server, deck.html.name)
    try:
        total = page.evaluate("Reveal.getTotalSlides()")
        walked = page.evaluate(WALK_JS)
        text = page.evaluate("document.querySelector('.reveal .slides').textContent")
        notes = page.evaluate("[...document.querySelectorAll('aside.notes')].map(n => n.textContent.trim().length)")
        figure = next((i for i, slide in enumerate(walked) if slide["images"]), None)
        if figure is not None:
            h, v = walked[figure]["at"].split("/")
            page.evaluate(f"Reveal.slide({h}, {v})")
            page.wait_for_function(slides.READY_JS)
            page.evaluate(slides.SETTLE_JS)
            page.screenshot(path=str(artifacts / f"slides_{Path(lesson).stem}.png"))
    finally:
        context.close()

    problems = list(recorder.problems)
    if total != deck.slides:
        problems.append(f"reveal.js shows {total} slides, the notebook's cut has {deck.slides}")
    for slide in walked:
        where = f"slide {slide['at']} ({slide['head']!r})"
        if not slide["text"] and not slide["images"]:
            problems.append(f"{where} is empty")
        if slide["overflow"] > 0.005:
            problems.append(f"{where} runs {slide['overflow']:.0%} of a slide past its bottom, even shrunk to fit")
        if slide["rawTex"]:
            problems.append(f"{where} shows raw TeX: {slide['rawTex'][:3]}")
        if slide["drawn"] < slide["math"] or slide["mathErrors"]:
            problems.append(f"{where}: MathJax drew {slide['drawn']} of {slide['math']} formulas, "
                            f"{slide['mathErrors']} errors")
    for line in _removed_lines(notebook):
        if line in text:
            problems.append(f"a cell tagged {' or '.join(LEFT_OUT)} is in the deck: {line!r}")
    if len(notes) != expected_notes or not all(notes):
        problems.append(f"{len(notes)} speaker notes in the deck ({sum(not n for n in notes)} empty), "
                        f"the notebook's cut has {expected_notes}")
    assert not problems, f"{lesson}:\n" + "\n".join(problems)


def test_speaker_view_shows_the_notes(built, slides_browser):
    """Key ``s`` opens reveal.js's speaker view, which shows the current slide's notes."""
    out, decks = built
    browser, server = slides_browser
    deck = next((d for d in decks.values() if "<aside class=\"notes\">" in d.html.read_text(encoding="utf-8")), None)
    assert deck is not None, "no deck has speaker notes: the notebooks' lecture cut marks no cell as notes"
    context, page, recorder = _open(browser, server, deck.html.name)
    try:
        at = page.evaluate("""() => { const s = Reveal.getSlides().find(s => s.querySelector('aside.notes'));
                                      return Reveal.getIndices(s); }""")
        page.evaluate(f"Reveal.slide({at['h']}, {at['v'] or 0})")
        page.wait_for_function(slides.READY_JS)
        expected = page.evaluate("Reveal.getCurrentSlide().querySelector('aside.notes').textContent.trim()")
        with context.expect_page(timeout=15_000) as popup:
            page.keyboard.press("s")
        speaker = popup.value
        speaker.wait_for_function("() => { const n = document.querySelector('.speaker-controls-notes .value');"
                                  " return n && n.textContent.trim().length > 0; }", timeout=20_000)
        shown = speaker.evaluate("document.querySelector('.speaker-controls-notes .value').textContent")
    finally:
        context.close()
    expected, shown = " ".join(expected.split())[:60], " ".join(shown.split())
    assert expected in shown, f"the speaker view shows {shown[:200]!r}, not the slide's notes {expected!r}"
    assert not recorder.problems, "\n".join(recorder.problems)


def test_the_handout_prints_one_page_a_slide(built, slides_browser):
    """The PDF handout of the shortest deck, printed through Chromium as make slides prints every deck."""
    import re

    out, decks = built
    deck = min(decks.values(), key=lambda d: d.slides)
    slides.print_pdfs([deck], out, browser=slides_browser[0])
    data = deck.pdf.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    assert data.startswith(b"%PDF") and pages == deck.slides, f"{deck.pdf.name}: {pages} pages for {deck.slides} slides"
