"""The lessons' website (docs/build_site.py) built from the stored lessons and read in Chromium.

Every page is opened from a local server; a test fails on a request to another host, a failed
request, an image that does not load, a link to a page or anchor that does not exist, or a widget
placeholder where a static figure belongs (the slice viewer's montage). Screenshots of lesson
03's montage and of the claims page go to tests/browser/artifacts/.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from labdriver import REPO, tempdir

#: What a page shows where a widget could not be drawn (JupyterLab, nbconvert and myst-nb wordings).
WIDGET_PLACEHOLDERS = ("Loading widget", "Error displaying widget", "widget-view+json", "Widget Javascript not detected")
#: The lesson whose stored output holds a SliceViewer (its cell is tagged browser-viewer).
MONTAGE_LESSON = "03_unet3d"


def _load(name: str):
    """A build script of docs/ as a module (docs/ is no package)."""
    module_name = f"unet_lessons_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO / "docs" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[module_name]


@pytest.fixture(scope="module")
def site():
    """The site built into a temporary folder and served on 127.0.0.1: (base URL, html folder, builder)."""
    builder = _load("build_site")
    out = tempdir("unet-lessons-site-")
    html = builder.build(out)
    try:
        with _load("slides").Server(html) as server:  # the slides' static server on 127.0.0.1
            yield f"{server.url}/", html, builder
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def site_browser(chromium):
    """A context of the run's Chromium for reading the site."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


class Visit:
    """One page opened with every request, failure and console error recorded."""

    def __init__(self, context, url: str) -> None:
        self.problems: list[str] = []
        self.page = context.new_page()
        host = urlparse(url).netloc
        self.page.on("request", lambda request: urlparse(request.url).scheme in ("http", "https")
                     and urlparse(request.url).netloc != host
                     and self.problems.append(f"request to another host: {request.url}"))
        self.page.on("requestfailed", lambda request: self.problems.append(f"failed request: {request.url}"))
        self.page.on("response", lambda response: response.status >= 400
                     and self.problems.append(f"HTTP {response.status}: {response.url}"))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", lambda message: message.type == "error"
                     and self.problems.append(f"console error: {message.text}"))
        self.page.goto(url, wait_until="networkidle")

    def broken_images(self) -> list[str]:
        return self.page.evaluate("""() => Array.from(document.images)
            .filter(image => !(image.complete && image.naturalWidth > 0)).map(image => image.src)""")

    def links(self) -> list[str]:
        return self.page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")

    def close(self) -> None:
        self.page.close()


def _pages(html: Path) -> list[str]:
    return sorted(str(path.relative_to(html)) for path in html.rglob("*.html")
                  if path.parts[len(html.parts)] not in ("_static", "_sources"))


@functools.lru_cache(maxsize=None)
def _ids(html: Path, page: str) -> set[str]:
    """The element ids of a built page (read once per page, however many links point into it)."""
    text = (html / page).read_text(encoding="utf-8")
    return set(re.findall(r'\sid="([^"]+)"', text))


def test_every_page_loads_only_local_files_and_every_link_resolves(site, site_browser):
    base, html, builder = site
    pages = _pages(html)
    lessons = [path.stem for path in builder.publish.lessons(builder.NOTEBOOKS)]
    assert {f"lessons/{name}.html" for name in lessons} <= set(pages), "a lesson has no page"
    assert {"index.html", "claims.html", "search.html"} <= set(pages)
    problems = []
    for name in pages:
        visit = Visit(site_browser, urljoin(base, name))
        try:
            problems += [f"{name}: {problem}" for problem in visit.problems]
            problems += [f"{name}: image does not load: {src}" for src in visit.broken_images()]
            text = visit.page.inner_text("body")
            problems += [f"{name}: widget placeholder {marker!r}" for marker in WIDGET_PLACEHOLDERS if marker in text]
            # myst-nb writes a widget view as a script for a widget manager; with none on the page it is a hole.
            if visit.page.locator('.jupyter-widgets, .widget-area, script[type*="jupyter.widget"]').count():
                problems.append(f"{name}: a widget element where a static figure belongs")
            for link in visit.links():
                target, fragment = urldefrag(link)
                if urlparse(target).netloc != urlparse(base).netloc:
                    continue  # external references (papers, repositories) are not fetched here
                relative = urlparse(target).path.lstrip("/") or "index.html"
                if relative.endswith("/"):
                    relative += "index.html"
                if not (html / relative).is_file():
                    problems.append(f"{name}: broken link to {relative}")
                elif fragment and relative.endswith(".html") and fragment not in _ids(html, relative):
                    problems.append(f"{name}: link to a missing anchor {relative}#{fragment}")
        finally:
            visit.close()
    assert not problems, "\n".join(problems[:40])


def test_the_slice_viewer_shows_its_labelled_montage(site, site_browser, artifacts):
    base, html, _ = site
    visit = Visit(site_browser, urljoin(base, f"lessons/{MONTAGE_LESSON}.html"))
    try:
        cell = visit.page.locator(".tag_browser-viewer")
        assert cell.count() == 1, "lesson 03's viewer cell (tag browser-viewer) is not on its page"
        image = cell.locator(".cell_output img")
        assert image.count() >= 1, "the viewer's cell shows no image: its montage is missing"
        size = image.first.evaluate("image => [image.naturalWidth, image.naturalHeight]")
        assert min(size) > 100, f"the montage is {size[0]}×{size[1]} px"
        # The cell's top just under the theme's sticky header, so that neither screenshot has the header over it.
        visit.page.evaluate("cell => window.scrollTo(0, cell.getBoundingClientRect().top + window.scrollY - 70)",
                            cell.element_handle())
        visit.page.screenshot(path=str(artifacts / "site_lesson03_page.png"))
        box = cell.bounding_box()
        visit.page.screenshot(path=str(artifacts / "site_lesson03_montage.png"),
                              clip={"x": box["x"], "y": box["y"], "width": box["width"],
                                    "height": min(box["height"], 900 - box["y"])})
        assert not visit.problems, visit.problems
    finally:
        visit.close()


def test_lesson_pages_fold_solutions_and_state_run_time_and_memory(site, site_browser):
    base, html, builder = site
    runs = builder.measured_runs()
    for path in builder.publish.lessons(builder.NOTEBOOKS):
        visit = Visit(site_browser, urljoin(base, f"lessons/{path.stem}.html"))
        try:
            text = visit.page.inner_text("article")
            assert builder.run_line(runs.get(path.name)) in text, f"{path.name}: run time and memory not shown"
            assert "Colab only" not in text, f"{path.name}: the Colab setup cell is on the page"
            solutions = visit.page.locator("details.solutions")
            if (builder.NOTEBOOKS / "solutions" / f"lesson{path.name[:2]}.py").is_file():
                assert solutions.count() == 1 and not solutions.evaluate("d => d.open"), \
                    f"{path.name}: the worked solutions are not folded away"
                assert not visit.page.locator("details.solutions pre").first.is_visible()
            # Solution cells are folded by myst-nb (tag hide-cell): their code is not shown until opened.
            for cell in visit.page.locator(".tag_solution").all():
                assert not cell.locator(".cell_input pre").first.is_visible(), f"{path.name}: a solution cell is open"
        finally:
            visit.close()


def test_the_claims_page_sorts_by_verdict_and_filters(site, site_browser, artifacts):
    base, _, builder = site
    visit = Visit(site_browser, urljoin(base, "claims.html"))
    try:
        page = visit.page
        rows = page.locator("#claims tbody tr")
        total = rows.count()
        assert total > 100
        page.locator("#claims th", has_text="verdict").click()
        verdicts = page.eval_on_selector_all("#claims tbody tr td.verdict", "cells => cells.map(c => c.textContent)")
        ranks = [builder.VERDICT_ORDER.index(verdict) for verdict in verdicts]
        assert ranks == sorted(ranks) and len(set(ranks)) >= 3, "the verdict column does not sort in verdict order"
        page.select_option("#verdict-filter", "contradicted at this budget")
        visible = page.eval_on_selector_all("#claims tbody tr:not([hidden]) td.verdict",
                                            "cells => cells.map(c => c.textContent)")
        assert visible and set(visible) == {"contradicted at this budget"}
        assert f"{len(visible)} of {total} claims shown" in page.inner_text("#claims-shown")
        page.screenshot(path=str(artifacts / "site_claims.png"))
        assert not visit.problems, visit.problems
    finally:
        visit.close()


def test_search_finds_a_lesson_offline(site, site_browser):
    base, _, _ = site
    visit = Visit(site_browser, urljoin(base, "search.html?q=sliding+window"))
    try:
        visit.page.wait_for_selector("#search-results li", timeout=30_000)
        assert visit.page.locator("#search-results li a").count() >= 1
        assert not visit.problems, visit.problems
    finally:
        visit.close()
