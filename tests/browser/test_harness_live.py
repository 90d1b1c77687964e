"""The browser checks can fail: an error cell, a widget that cannot be drawn and a hung kernel are
caught within a bounded time, and a stopped server leaves no process behind. Small notebooks,
written beside the lesson copies; about a minute in all."""

from __future__ import annotations

import time

import nbformat
import psutil
import pytest

from labdriver import LabServer, NotebookPage, error_outputs, widget_problems

BROKEN_WIDGET = ('from IPython.display import display\n'
                 'display({"application/vnd.jupyter.widget-view+json": {"model_id": "0" * 32, "version_major": 2, '
                 '"version_minor": 0}, "text/plain": "a widget whose model does not exist"}, raw=True)')


def write_notebook(server: LabServer, name: str, sources: list[str]) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, server.root_dir / name)
    return name


@pytest.fixture
def scratch(lab_server, browser_context):
    pages = []

    def open_notebook(name: str, sources: list[str]) -> NotebookPage:
        page = NotebookPage(browser_context, lab_server, write_notebook(lab_server, name, sources))
        pages.append(page)
        return page.open(len(sources))

    yield open_notebook
    for page in pages:
        page.close()
    lab_server.shutdown_kernels()
    for page in pages:
        (lab_server.root_dir / page.name).unlink(missing_ok=True)


def test_an_error_cell_stops_run_all_and_is_reported(scratch):
    page = scratch("_error.ipynb", ["x = 1", "1 / 0", "print('never runs')"])
    start = time.monotonic()
    page.run_all(timeout=60)
    assert time.monotonic() - start < 30, "Run All was not seen to stop at the error"
    assert page.prompts()[-1] == "[ ]:"
    errors = error_outputs(page.save())
    assert len(errors) == 1 and errors[0].startswith("code cell 2: ZeroDivisionError")


def test_a_widget_that_cannot_be_drawn_is_reported(scratch):
    page = scratch("_widget.ipynb", ["import ipywidgets as w\nw.IntSlider(value=3, description='fine')", BROKEN_WIDGET])
    page.run_all(timeout=60)
    notebook = page.save()
    page.wait_for(lambda: widget_problems(notebook, page.cell_outputs()), 30, "the broken widget was not noticed")
    problems = widget_problems(notebook, page.cell_outputs())
    assert len(problems) == 1 and problems[0].startswith("code cell 2: 1 widget output(s), 0 drawn")


def test_a_hung_kernel_fails_within_the_timeout(scratch):
    page = scratch("_hung.ipynb", ["import time\ntime.sleep(3600)", "print('never runs')"])
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="Run All did not finish"):
        page.run_all(timeout=10)
    assert time.monotonic() - start < 30


def test_stopping_the_server_leaves_no_process(tmp_path):
    (tmp_path / "root").mkdir()
    server = LabServer(tmp_path / "root", tmp_path / "jupyter")
    try:
        server.start()
        kernel = server.api("POST", "/api/kernels")
        deadline = time.monotonic() + 60
        while not psutil.Process(server.process.pid).children(recursive=True) and time.monotonic() < deadline:
            time.sleep(0.5)
        server.remember_children()
        started = server.pids()
        assert len(started) >= 2, f"no kernel process seen for {kernel}"
    finally:
        server.stop()
    assert not server.running()
    assert not [pid for pid in started if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
