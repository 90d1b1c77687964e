"""Drive the lessons in a live JupyterLab, in Debian's Chromium through Python Playwright.

Two pieces: :class:`LabServer`, a private JupyterLab on 127.0.0.1 (random free port, a
token, its own config, data, settings and workspace directories) that is stopped by its own
process ids; and :class:`NotebookPage`, one notebook open in the browser, with the waits that
JupyterLab needs (the kernel exists and is idle, the cells are loaded, every prompt reads
``[n]`` after Run All) and the checks on what the page shows.

Every wait here has a deadline, so a hung kernel or page fails a test instead of hanging it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Optional

import psutil

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = Path(os.environ.get("UNET_LESSONS_BROWSER_NOTEBOOKS", REPO / "notebooks"))
ARTIFACTS = Path(os.environ.get("UNET_LESSONS_BROWSER_ARTIFACTS", REPO / "tests" / "browser" / "artifacts"))
#: Each lesson trains small networks: about 100-125 s on 2 free cores, two to four times that when
#: another job shares them; past this a lesson fails as hung.
NOTEBOOK_TIMEOUT = float(os.environ.get("UNET_LESSONS_BROWSER_NOTEBOOK_TIMEOUT", "600"))
#: The lesson whose SliceViewer is driven by test_slice_viewer_live.py.
VIEWER_LESSON = "03_unet3d.ipynb"
#: Debian's Chromium; Playwright starts it through ``executable_path`` and never downloads one.
CHROMIUM = os.environ.get("UNET_LESSONS_CHROMIUM", "/usr/bin/chromium")
#: Without the background-networking flags Chromium floods the closed network with connections.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Tall, so that a whole lesson's worth of cells is laid out; screenshots still scroll into view.
VIEWPORT = {"width": 1400, "height": 2400}
INSTALL_HINT = "make browser-setup (apt-get install chromium; pip install the playwright pin of requirements.lock)"

# Settings a person would not want in a test: the news pop-up and the update check reach the
# network, which is closed here, and their toasts cover cells.
_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}
_SERVER_CONFIG = {
    "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    "ServerApp": {"open_browser": False, "port_retries": 0, "ip": "127.0.0.1"},
}


def lessons() -> list[str]:
    """The lesson notebooks, ``notebooks/[0-9]*.ipynb``, found anew on every run."""
    return sorted(path.name for path in NOTEBOOKS.glob("[0-9]*.ipynb"))


def _terminate_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent (the test) dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LabServer:
    """A JupyterLab server of the test's own, serving ``root_dir``.

    Args:
        root_dir: the notebook directory; kernels start in the notebook's own directory.
        work_dir: holds the private config, data, runtime, settings and workspace directories
            and the server's log.
        startup_timeout: seconds to wait for the server to answer.
    """

    def __init__(self, root_dir: Path, work_dir: Path, startup_timeout: float = 90.0) -> None:
        self.root_dir, self.work_dir = Path(root_dir), Path(work_dir)
        self.port, self.token = free_port(), uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.work_dir / "jupyterlab.log"
        self.startup_timeout = startup_timeout
        self.process: Optional[subprocess.Popen] = None
        self._known: dict[int, psutil.Process] = {}

    def _environment(self) -> dict:
        dirs = {name: self.work_dir / name for name in ("config", "data", "runtime", "settings", "workspaces")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps(_SERVER_CONFIG, indent=1))
        for name, values in _USER_SETTINGS.items():
            target = dirs["settings"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        env = dict(os.environ)  # the Makefile's TEST_ENV and UNET_LESSONS_DATA reach the kernels from here
        env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
                   JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
                   JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), JUPYTER_PREFER_ENV_PATH="1",
                   PYTHONUNBUFFERED="1")
        env.pop("JUPYTER_TOKEN", None)
        return env

    def start(self) -> "LabServer":
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                   "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={self.root_dir}"]
        if os.geteuid() == 0:
            command.append("--allow-root")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        # Its own session and process group, so that the finalizer can stop exactly this server; and
        # on Linux a TERM when the test process dies, even by SIGKILL, when no finalizer runs. Its
        # kernels exit when it does (ipykernel watches its parent through JPY_PARENT_PID).
        self.process = subprocess.Popen(command, cwd=self.root_dir, env=self._environment(), stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_terminate_with_parent)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"JupyterLab did not answer within {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, timeout: float = 10.0):
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def lab_url(self, notebook: str) -> str:
        # ?reset starts from an empty workspace, so that no earlier tab is restored.
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """Shut every session's kernel down through the REST API (used between notebooks)."""
        try:
            for session in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
        except (urllib.error.URLError, OSError):
            pass

    def remember_children(self) -> None:
        """Note the server's descendants (kernels start in sessions of their own), to stop them by id later."""
        if self.process is None:
            return
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self._known[child.pid] = child
        except psutil.NoSuchProcess:
            pass

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server and every process it started, by their ids: TERM, then KILL."""
        if self.process is None:
            return
        self.remember_children()
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # its group: the process group the test made
            except ProcessLookupError:
                pass
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(grace)
        leftovers = [p for p in self._known.values() if p.is_running()]
        for process in leftovers:
            try:
                process.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(leftovers, timeout=grace)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=grace)

    def pids(self) -> list[int]:
        """The server's id and those of the processes it was seen to start."""
        return ([self.process.pid] if self.process else []) + list(self._known)

    def running(self) -> list[int]:
        """Ids of the server and of the processes it started that still run (empty once stopped)."""
        pids = [self.process.pid] if self.process and self.process.poll() is None else []
        return pids + [pid for pid, p in self._known.items() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def copy_notebooks(source: Path, target: Path) -> list[Path]:
    """Copy the lessons (``[0-9]*.ipynb``), ``solutions/`` and the stored tables ``results/`` (which the lessons read
    beside them) so that runs never touch the repo's outputs."""
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for notebook in sorted(source.glob("[0-9]*.ipynb")):
        copies.append(Path(shutil.copy2(notebook, target / notebook.name)))
    shutil.copytree(source / "solutions", target / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(source / "results", target / "results")
    return copies


class NotebookPage:
    """One notebook open in JupyterLab in its own browser page.

    Args:
        context: a Playwright browser context.
        server: the :class:`LabServer` serving the notebook.
        name: the notebook's path relative to the server's root.
        console: list that collects this page's console errors and uncaught exceptions.
    """

    def __init__(self, context, server: LabServer, name: str) -> None:
        self.server, self.name = server, name
        self.page = context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: message.type in ("error", "warning")
                     and self.console.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    # ----- waiting ------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], object], timeout: float, what, interval: float = 0.25):
        """Poll ``predicate`` until it is truthy; fail with ``what`` (text, or a function giving it)
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                what = what() if callable(what) else what
                raise TimeoutError(f"{self.name}: {what} (waited {timeout:.0f} s)")
            self.page.wait_for_timeout(interval * 1000)

    def kernel_status(self) -> str:
        """The status bar's kernel item, e.g. ``"Python 3 (ipykernel) | Idle"``."""
        return self.page.evaluate("""() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
            .map(node => node.textContent.trim()).find(text => text.includes(' | ')) || ''""")

    def prompts(self) -> list[str]:
        """The input prompts of the notebook's code cells, e.g. ``["[1]:", "[*]:", "[ ]:"]``; a cell
        whose source is collapsed (the lessons' solution cells) shows no prompt and reads ``"hidden"``."""
        return self.page.evaluate("""() => [...document.querySelectorAll(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell')]
            .map(cell => cell.querySelector('.jp-InputArea-prompt')?.textContent.trim() ?? 'hidden')""")

    def open(self, code_cells: int, timeout: float = 120.0) -> "NotebookPage":
        """Open the notebook; wait until its cells are loaded and its kernel reads ``| Idle``."""
        self.page.goto(self.server.lab_url(self.name), timeout=timeout * 1000)
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout * 1000)
        # The kernel indicator says "idle" before the kernel exists; the status bar's "| Idle" does not.
        self.wait_for(lambda: len(self.prompts()) == code_cells, timeout,
                      lambda: f"expected {code_cells} code cells, the page shows {len(self.prompts())}")
        self.wait_for(lambda: self.kernel_status().endswith("| Idle"), timeout,
                      f"kernel never became idle (status bar: {self.kernel_status()!r})")
        return self

    def command(self, menu: str, command: str) -> None:
        """Run a main-menu command as a person would: open ``menu``, click the item for ``command``."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
        self.page.locator(f'.lm-Menu-item[data-command="{command}"]').first.click()

    def run_all(self, timeout: float) -> float:
        """Run All (``runmenu:run-all``) and wait until the kernel has stopped running cells; the seconds it took.

        Done when the kernel reads ``| Idle`` and no prompt reads ``[*]`` (queued or running) at two
        polls a second apart: normally every prompt then reads ``[n]``; after a cell that raised,
        JupyterLab leaves the rest ``[ ]``. The caller checks the outputs and execution counts.
        """
        start, before = time.monotonic(), self.prompts()
        self.command("Run", "runmenu:run-all")
        self.wait_for(lambda: "[*]:" in self.prompts() or self.prompts() != before, 30, "Run All started nothing")
        quiet = [False]

        def finished():
            quiet.append(self.kernel_status().endswith("| Idle") and "[*]:" not in self.prompts())
            return quiet[-1] and quiet[-2]

        self.wait_for(finished, timeout, lambda: "Run All did not finish: prompts " + " ".join(self.prompts())
                      + f"; status bar {self.kernel_status()!r}", interval=1.0)
        return time.monotonic() - start

    # ----- what the page shows -----------------------------------------------------------------
    def cell_outputs(self) -> list[dict]:
        """Per code cell, in order: its prompt, the widget views drawn at the top level of its outputs,
        and any widget placeholder or error text shown instead of a widget."""
        return self.page.evaluate("""() => [...document.querySelectorAll(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell')].map(cell => {
              const outputs = [...cell.querySelectorAll(
                  '.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')];
              return {
                prompt: cell.querySelector('.jp-InputArea-prompt')?.textContent.trim() ?? 'hidden',
                widgets: outputs.filter(node => node.querySelector(':scope > .lm-Widget.jupyter-widgets')).length,
                problems: outputs.map(node => node.textContent)
                    .filter(text => /Error displaying widget|Error creating widget|Loading widget|Could not create/.test(text))
                    .map(text => text.slice(0, 300)),
              };
            })""")

    def widgets_loading(self) -> bool:
        return any("Loading widget" in problem for cell in self.cell_outputs() for problem in cell["problems"])

    def save(self, timeout: float = 60.0):
        """Save the notebook (``docmanager:save``) and return it as the server now holds it (nbformat)."""
        import nbformat

        path = f"/api/contents/{self.name}"
        before = self.server.api("GET", path + "?content=0")["last_modified"]
        self.command("File", "docmanager:save")
        self.wait_for(lambda: self.server.api("GET", path + "?content=0")["last_modified"] != before
                      and not self.page.locator(".lm-TabBar-tab.jp-mod-dirty").count(), timeout,
                      "the notebook was not saved")
        model = self.server.api("GET", path + "?type=notebook&content=1", timeout=timeout)
        return nbformat.from_dict(model["content"])

    def screenshot(self, locator, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        locator.scroll_into_view_if_needed(timeout=10_000)
        locator.screenshot(path=str(path), timeout=30_000)

    def image_bytes(self, image_locator) -> bytes:
        """The bytes behind an ``<img>`` (a blob or data URL), as the page holds them."""
        encoded = image_locator.evaluate("""async (img) => {
            const data = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
            let text = '';
            for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode(...data.subarray(i, i + 0x8000));
            return btoa(text);
        }""")
        return base64.b64decode(encoded)

    @property
    def closed(self) -> bool:
        return self.page.is_closed()

    def close(self) -> None:
        try:
            self.page.close()
        except Exception:  # noqa: BLE001 - the page may already be gone with the browser
            pass


# ----- checks on a saved notebook and the page ----------------------------------------------------
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Console lines that name the widget machinery; any of them at level "error" fails the lesson.
WIDGET_CONSOLE = re.compile(r"widget|jupyter-widgets|ipywidgets|comm|model", re.IGNORECASE)


def error_outputs(notebook) -> list[str]:
    """Every error output of the saved notebook, as ``cell N: Name: value`` plus the traceback's end."""
    found, code_index = [], 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = ANSI.sub("", "\n".join(output.get("traceback", [])[-3:]))
                found.append(f"code cell {code_index}: {output.get('ename')}: {output.get('evalue')}\n{trace}")
    return found


def widget_problems(notebook, shown: list[dict]) -> list[str]:
    """Widget outputs of the saved notebook that the page does not show as a drawn widget."""
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code_cells) == len(shown), f"{len(code_cells)} code cells in the file, {len(shown)} on the page"
    problems = []
    for number, (cell, page) in enumerate(zip(code_cells, shown), start=1):
        expected = sum(WIDGET_VIEW in output.get("data", {}) for output in cell.get("outputs", []))
        if page["widgets"] != expected or page["problems"]:
            problems.append(f"code cell {number}: {expected} widget output(s), {page['widgets']} drawn; "
                            f"the page shows {page['problems']}")
    return problems


def console_problems(lines: list[str]) -> list[str]:
    """Uncaught page errors, and console errors from the widget machinery."""
    return [line for line in lines if line.startswith("pageerror:")
            or (line.startswith("error:") and WIDGET_CONSOLE.search(line))]


def tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
