"""Lecture slides from the lesson notebooks: reveal.js decks and PDF handouts that work offline.

Run ``make slides``, or ``.venv/bin/python docs/slides.py [NOTEBOOKS] [--out DIR] [--no-pdf]``
(also ``python -m docs.slides``). Every lesson ``NOTEBOOKS/[0-9][0-9]_*.ipynb`` (default
``notebooks/``) becomes ``DIR/<lesson>.slides.html`` (default ``docs/_build/slides/``) through
nbconvert's ``SlidesExporter``, and ``DIR/<lesson>.pdf``, printed by Debian's Chromium through
Playwright in reveal.js's ``?print-pdf`` mode once MathJax has typeset. ``DIR/index.html`` links them.

The lecture cut is the notebooks' own slide metadata, ``cell.metadata.slideshow.slide_type``
(``slide``, ``subslide``, ``fragment``, ``skip``, ``notes`` or ``-``), as Jupyter's property
inspector sets it. One key of our own extends it: ``"notes_from": k`` on a markdown cell keeps
its first k blocks (headings, paragraphs, list items) on the slide and sends the rest to the
speaker notes (press ``s`` in a deck), so that a section's prose need not be split into cells.
A slide whose content is taller than the slide is shrunk to fit, down to 75 %.
Cells tagged ``solution``, ``colab-setup`` or ``colab-badge`` are left out.

Nothing is loaded from the network, at build time or when the slides are shown: reveal.js,
MathJax, require.js and jQuery are copied from ``docs/vendor/`` (see its README) into
``DIR/vendor/`` and referred to by relative URLs, so that the folder works from a USB stick,
over ``file://``. Printing records every request the pages make and fails on one that leaves
the folder or fails.
"""

from __future__ import annotations

import argparse
import copy
import functools
import html
import http.server
import importlib.util
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from unet_lessons import publish
from unet_lessons.publish import LESSON_GLOB

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "docs" / "vendor"
DEFAULT_NOTEBOOKS = REPO / "notebooks"
DEFAULT_OUT = REPO / "docs" / "_build" / "slides"
#: Cells left out of the slides, by tag.
REMOVE_TAGS = ("solution", publish.SETUP_TAG, publish.BADGE_TAG)
CHROMIUM = os.environ.get("UNET_LESSONS_CHROMIUM", "/usr/bin/chromium")
#: Without the background-networking flags Chromium tries to reach Google's services.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: The slide size (16:9): reveal.js scales it to the screen; nbconvert's fonts are 20 px.
WIDTH, HEIGHT = 1280, 720
INSTALL_HINT = "make browser-setup (apt-get install chromium; pip install the playwright pin of requirements.lock)"

# Relative to DIR: the decks sit beside vendor/.
REVEAL = "vendor/reveal.js"
MATHJAX = "vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
REQUIRE_JS = "vendor/requirejs/require.js"
JQUERY = "vendor/jquery/jquery.js"

# nbconvert's reveal template, less what would reach the network (mermaid from a CDN, the
# widget manager from unpkg; the lessons store no widget state, so widget outputs fall back to
# their PNG), plus a few rules that keep code and figures on the slide. Reveal starts only once
# MathJax has typeset when printing, so that the pages are laid out with the final math.
TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block jupyter_widgets %}{% endblock %}
{% block html_head_css %}
<link rel="icon" href="data:,">
<style type="text/css">
.reveal .slides { text-align: left; }
.reveal .slides section h1, .reveal .slides section h2, .reveal .slides section h3,
.reveal .slides section h4 { text-transform: none; }
.reveal .jp-OutputArea-output img { max-width: 100%; max-height: 450px; width: auto; height: auto; }
.reveal .jp-RenderedHTMLCommon table { font-size: 16px; }
.reveal pre { box-shadow: none; }
.reveal .jp-InputArea-editor { overflow: hidden; }
.reveal .jp-RenderedText pre, .reveal .highlight pre { white-space: pre-wrap; overflow-wrap: anywhere; }
</style>
{% endblock %}
{% block footer_js %}
<script>
(function () {
  var printing = /print-pdf/gi.test(window.location.search);
  // A slide taller than the slide size is shrunk to fit, but no further than this.
  var MIN_ZOOM = 0.75;
  function fit(section, frame) {
    if (!section || section.querySelector("section")) return;
    section.style.zoom = "";
    var room = frame.getBoundingClientRect().bottom - section.getBoundingClientRect().top;
    var need = section.getBoundingClientRect().height;
    if (need > room + 1) section.style.zoom = Math.max(MIN_ZOOM, room / need);
  }
  // After a slide change: MathJax redraws the new slide's math (it was laid out hidden), then the
  // slide is fitted; window.slidesSettled tells a test or the printer when both are done.
  function settle(Reveal) {
    window.slidesSettled = false;
    var slide = Reveal.getCurrentSlide(), frame = document.querySelector(".reveal .slides");
    var done = function () { if (!printing) fit(slide, frame); window.slidesSettled = true; };
    if (window.MathJax && MathJax.Hub) {
      if (MathJax.Hub.getAllJax(slide).length) MathJax.Hub.Queue(["Rerender", MathJax.Hub, slide]);
      MathJax.Hub.Queue(done);
    } else {
      done();
    }
  }
  function start() {
    require({waitSeconds: 15}, ["{{ resources.reveal.url_prefix }}/dist/reveal.js",
                                "{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"],
    function (Reveal, RevealNotes) {
      Reveal.on("pdf-ready", function () {
        var pages = document.querySelectorAll(".pdf-page");
        pages.forEach(function (page) {
          page.querySelectorAll("section").forEach(function (section) { fit(section, page); });
        });
        // No blank page after the last slide.
        if (pages.length) pages[pages.length - 1].style.breakAfter = "avoid";
        window.slidesPdfReady = true;
      });
      Reveal.on("ready", function () { settle(Reveal); });
      Reveal.on("slidechanged", function () { settle(Reveal); });
      Reveal.initialize({
        controls: true, progress: true, history: true, center: false,
        transition: "{{ resources.reveal.transition }}", slideNumber: "c/t",
        plugins: [RevealNotes], width: {{ resources.reveal.width }}, height: {{ resources.reveal.height }},
        pdfSeparateFragments: false, pdfMaxPagesPerSlide: 1
      });
      window.Reveal = Reveal;
    });
  }
  if (printing && window.MathJax && MathJax.Hub) {
    MathJax.Hub.Register.StartupHook("End", function () { MathJax.Hub.Queue(start); });
  } else {
    start();
  }
})();
</script>
{% endblock footer_js %}
"""


class SlidesError(RuntimeError):
    """A problem the person running the build can fix; main() prints it without a traceback."""


@dataclass
class Deck:
    """One lesson's slides: the notebook, its title, the number of slides and the files written."""

    notebook: Path
    title: str
    slides: int
    html: Path
    pdf: Path | None = None


def lessons(folder: Path) -> list[Path]:
    """The lesson notebooks ``folder/[0-9][0-9]_*.ipynb``, in order."""
    found = publish.lessons(folder)
    if not found:
        raise SlidesError(f"no lesson notebooks ({LESSON_GLOB}) in {folder}")
    return found


def slide_type(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-") or "-"


_ITEM = re.compile(r"^(?:[*+-]|\d+[.)])\s")


def blocks(source: str) -> list[str]:
    """A markdown cell's top-level blocks, in order: headings, paragraphs, list items (with their
    continuation lines), tables, fenced code."""
    found: list[list[str]] = []
    fenced = False
    for line in source.splitlines():
        starts = not fenced and (line.startswith("#") or _ITEM.match(line) or line.startswith("```")
                                 or not found or not found[-1] or found[-1][0].startswith("#"))
        if line.startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if found and found[-1]:
                found.append([])
            continue
        if starts and found and found[-1]:
            found.append([])
        if not found:
            found.append([])
        found[-1].append(line)
    return ["\n".join(block) for block in found if block]


def _split_notes(cell) -> list:
    """A markdown cell marked ``"notes_from": k`` as two cells: its first k blocks on the slide
    (with the cell's slide type), the rest as speaker notes."""
    keep = int(cell.metadata.slideshow["notes_from"])
    parts = blocks(cell.source)
    if not 0 < keep < len(parts):
        return [cell]
    shown, notes = copy.deepcopy(cell), copy.deepcopy(cell)
    shown.source = "\n\n".join(parts[:keep])
    notes.source = "\n\n".join(parts[keep:])
    notes.metadata["slideshow"] = {"slide_type": "notes"}
    if "id" in cell:
        notes.id = f"{cell.id[:57]}-notes"
    return [shown, notes]


def lecture_cut(nb):
    """The notebook as the slides show it: tagged cells removed, ``notes_from`` cells split."""
    cells = []
    for cell in nb.cells:
        if set(cell.get("metadata", {}).get("tags", [])) & set(REMOVE_TAGS):
            continue
        if cell.cell_type == "markdown" and "notes_from" in cell.get("metadata", {}).get("slideshow", {}):
            cells.extend(_split_notes(cell))
        else:
            cells.append(cell)
    nb = copy.copy(nb)
    nb.cells = cells
    return nb


def count_slides(nb) -> int:
    """Slides as reveal.js counts them (``Reveal.getTotalSlides()``): every slide and subslide."""
    shown = [cell for cell in nb.cells if slide_type(cell) not in ("skip", "notes")]
    return (1 if shown else 0) + sum(slide_type(cell) in ("slide", "subslide") for cell in shown[1:])


def title_of(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _exporter():
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(reveal_url_prefix=REVEAL, reveal_theme="white", reveal_transition="none",
                              reveal_width=str(WIDTH), reveal_height=str(HEIGHT), mathjax_url=MATHJAX,
                              require_js_url=REQUIRE_JS, jquery_url=JQUERY, exclude_input_prompt=True,
                              exclude_output_prompt=True, exclude_anchor_links=True)
    exporter.raw_template = TEMPLATE
    return exporter


def _network_urls(html_text: str) -> list[str]:
    """URLs in the page that a browser would load from another host (links in the prose are fine)."""
    loads = re.findall(r"""<(?:script|link|img|iframe|source|video|audio)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)""",
                       html_text)
    loads += re.findall(r"""\bimport\s+[\w{}\s,*]+\s+from\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]""",
                        html_text)
    loads = [url if isinstance(url, str) else next(filter(None, url), "") for url in loads]
    return sorted({url for url in loads if re.match(r"^(https?:)?//", url)})


def export_deck(path: Path, out: Path, exporter=None) -> Deck:
    """Write ``out/<lesson>.slides.html`` from one notebook."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    mermaid = [i for i, cell in enumerate(nb.cells) for output in cell.get("outputs", [])
               if "text/vnd.mermaid" in output.get("data", {})]
    if mermaid:
        raise SlidesError(f"{path.name}: cells {mermaid} show mermaid diagrams, which would need mermaid from "
                          "the network; store them as PNG")
    nb = lecture_cut(nb)
    if not any(slide_type(cell) not in ("skip", "notes") for cell in nb.cells):
        raise SlidesError(f"{path.name}: every cell is skip or notes; nothing to show")
    exporter = exporter or _exporter()
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    remote = _network_urls(body)
    if remote:
        raise SlidesError(f"{path.name}: the deck would load {remote} from the network")
    target = out / f"{path.stem}.slides.html"
    target.write_text(body, encoding="utf-8")
    return Deck(path, title_of(nb, path.stem), count_slides(nb), target)


def copy_vendor(out: Path) -> None:
    if not (VENDOR / "reveal.js" / "dist" / "reveal.js").exists():
        raise SlidesError(f"{VENDOR} is incomplete: reveal.js is missing (see docs/vendor/README.md)")
    shutil.rmtree(out / "vendor", ignore_errors=True)
    shutil.copytree(VENDOR, out / "vendor", ignore=shutil.ignore_patterns("README.md"))


def check_browser(chromium: str = CHROMIUM) -> None:
    """Fail with what is missing and how to install it, before any work is done."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright")
    if not os.access(chromium, os.X_OK):
        missing.append(f"Chromium ({chromium}; set UNET_LESSONS_CHROMIUM to use another)")
    if missing:
        raise SlidesError(f"the PDF handouts need {' and '.join(missing)}, which is missing. Install with: "
                          f"{INSTALL_HINT}; or build the slides without handouts: --no-pdf")


class Server:
    """The slides folder over http on 127.0.0.1 (a free port), in a thread; a context manager."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


#: Resolves after the next two frames and once every font those frames asked for is in.
SETTLE_JS = """() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))
    .then(() => document.fonts.ready).then(() => true)"""
#: True once reveal.js is ready, the current slide's math is drawn and fitted, and the fonts are in.
READY_JS = """() => window.Reveal && Reveal.isReady() && window.slidesSettled === true && window.MathJax
    && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0 && document.fonts.status === "loaded"
"""


def print_pdfs(decks: list[Deck], out: Path, chromium: str = CHROMIUM, browser=None) -> None:
    """Print each deck to ``out/<lesson>.pdf`` in reveal.js's print mode, one page a slide.

    ``browser``: a Playwright browser already running (the tests share one); else Chromium is started here.
    """
    if browser is not None:
        with Server(out) as server:
            _print_with(browser, server, decks, out)
        return
    from playwright.sync_api import sync_playwright

    with Server(out) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            _print_with(browser, server, decks, out)
        finally:
            browser.close()


def _print_with(browser, server: "Server", decks: list[Deck], out: Path) -> None:
    from playwright.sync_api import Error as PlaywrightError

    for deck in decks:
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        problems: list[str] = []
        page.on("request", lambda request: request.url.startswith((server.url + "/", "data:"))
                or problems.append(f"request to another host: {request.url}"))
        page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} ({request.failure})"))
        page.on("response", lambda response: response.status >= 400
                and problems.append(f"HTTP {response.status}: {response.url}"))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        try:
            page.goto(f"{server.url}/{deck.html.name}?print-pdf", wait_until="load")
            page.wait_for_function("() => window.slidesPdfReady === true", timeout=60_000)
            page.wait_for_function(READY_JS, timeout=60_000)
            page.evaluate(SETTLE_JS)
            page.wait_for_function(READY_JS, timeout=60_000)
        except PlaywrightError as error:
            raise SlidesError(f"{deck.html.name} did not get ready to print ({error.message.splitlines()[0]}); "
                              + "; ".join(problems)) from None
        shown = page.evaluate("Reveal.getTotalSlides()")
        if shown != deck.slides:
            problems.append(f"reveal.js shows {shown} slides, the notebook's cut has {deck.slides}")
        deck.pdf = out / f"{deck.notebook.stem}.pdf"
        page.pdf(path=str(deck.pdf), prefer_css_page_size=True, print_background=True)
        page.close()
        if problems:
            raise SlidesError(f"{deck.html.name}: " + "; ".join(problems))


def write_index(decks: list[Deck], out: Path) -> Path:
    rows = "\n".join(
        f'<li><a href="{html.escape(d.html.name)}">{html.escape(d.title)}</a> ({d.slides} slides)'
        + (f' · <a href="{html.escape(d.pdf.name)}">PDF handout</a>' if d.pdf else "") + "</li>"
        for d in decks)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>unet-lessons: lecture slides</title>
<link rel="icon" href="data:,">
<style>body {{ font-family: sans-serif; max-width: 48em; margin: 2em auto; line-height: 1.5; }}</style>
</head><body>
<h1>unet-lessons: lecture slides</h1>
<p>One deck per lesson, made from the notebook. Keys: arrows to move, <kbd>s</kbd> for the speaker view
with the notes, <kbd>f</kbd> for full screen, <kbd>Esc</kbd> for the overview. Everything needed is in this
folder: it works offline and from a USB stick.</p>
<ul>
{rows}
</ul>
</body></html>
"""
    target = out / "index.html"
    target.write_text(page, encoding="utf-8")
    return target


def build(notebooks: Path = DEFAULT_NOTEBOOKS, out: Path = DEFAULT_OUT, pdf: bool = True,
          chromium: str = CHROMIUM) -> list[Deck]:
    """Build every lesson's deck (and handout) into ``out``; returns the decks."""
    start = time.monotonic()
    paths = lessons(notebooks)
    if pdf:
        check_browser(chromium)
    out.mkdir(parents=True, exist_ok=True)
    copy_vendor(out)
    exporter = _exporter()
    decks = []
    for path in paths:
        deck = export_deck(path, out, exporter)
        decks.append(deck)
        print(f"{path.name}: {deck.slides} slides", flush=True)
    if pdf:
        print_pdfs(decks, out, chromium)
        print(f"PDF handouts: {len(decks)}, {sum(d.pdf.stat().st_size for d in decks) / 2**20:.1f} MiB", flush=True)
    index = write_index(decks, out)
    print(f"{len(decks)} decks, {sum(d.slides for d in decks)} slides in {index.parent} "
          f"(open {index.name}) in {time.monotonic() - start:.1f} s", flush=True)
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="?", type=Path, default=DEFAULT_NOTEBOOKS,
                        help="folder of the lesson notebooks (default: notebooks/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: docs/_build/slides/)")
    parser.add_argument("--no-pdf", dest="pdf", action="store_false", help="skip the PDF handouts (no browser needed)")
    args = parser.parse_args(argv)
    try:
        build(args.notebooks, args.out, args.pdf)
    except SlidesError as error:
        print(f"slides: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
