"""Sphinx configuration of the lessons' website (``make site``; the build is docs/build_site.py).

docs/build_site.py stages the sources (this file, docs/_static, the lessons, their solutions and
tables, the gathered claim ledger) into docs/_build/source and builds from there. Nothing is
executed: the site shows the outputs that nbval checked. Every script and stylesheet is served
from the site itself, MathJax included (the copy in docs/vendor/mathjax, shared with the slides).
"""



project = "unet-lessons"
author = "the unet-lessons contributors"
copyright = "the unet-lessons contributors; code MIT, text and figures CC BY 4.0"
release = version = __import__("unet_lessons").__version__

extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# The stored outputs, as nbval checked them: never re-executed.
nb_execution_mode = "off"
# The slice viewer's output carries a widget view and its labelled montage (image/png): a static
# page has no kernel behind a widget, so the montage is what it shows.
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
    ("html", "application/vnd.jupyter.widget-state+json", None),
]
# No widget manager from a CDN: the pages hold no live widgets.
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# MathJax 2 (the version nbconvert's slides configure), served locally; one copy for both.
mathjax_path = "vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
mathjax2_config = {"messageStyle": "none", "CommonHTML": {"linebreaks": {"automatic": True}}}
myst_update_mathjax = False

html_theme = "sphinx_book_theme"
html_title = "unet-lessons"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["lessons.css"]
html_js_files = ["sortable.js"]
html_last_updated_fmt = None
# The pages are the product; the staged notebooks behind them would double the size of the site.
html_copy_source = False
html_show_sourcelink = False
# A fixed light mode: with none set, the theme logs an error on a reader's first visit.
html_context = {"default_mode": "light"}
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
}
# Search runs in the browser from the built index; nothing leaves the site.
html_search_language = "en"
suppress_warnings = ["mystnb.unknown_mime_type"]
