"""The documentation site: what its generated pages cover, and the built site in a real browser.

The first tests read the page generator (docs/scripts/gen_derivations.py) and need no MkDocs.
The others need the built site (``mkdocs build --strict`` writes ``site/``) and, for the
browser, Selenium with Debian's ``chromium`` and ``chromium-driver``. Without them they skip
and say why, except where ``NPDL_REQUIRE_DOCS_SITE=1`` (CI, ``.ci/run``): there a missing
site, Selenium or browser fails instead.

In the browser, every page of ``site/`` is loaded from disk (``file://``, as a reader opens
``site/index.html``) and must: log no console error, typeset every formula (no raw TeX left
outside code), load every image, fetch nothing from outside ``file://``, and link only to
pages and anchors that exist.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from npdl.gradcheck.cases import CASES
from npdl.layers import activations, conv, dense, pooling
from npdl.losses import cross_entropy

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
REQUIRE = os.environ.get("NPDL_REQUIRE_DOCS_SITE", "0") not in ("", "0")
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"


def unavailable(reason: str):
    if REQUIRE:
        pytest.fail(f"{reason} (NPDL_REQUIRE_DOCS_SITE=1 requires it)")
    pytest.skip(reason)


def _generator():
    path = ROOT / "docs" / "scripts" / "gen_derivations.py"
    spec = importlib.util.spec_from_file_location("gen_derivations", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _generator()


# ------------------------------------------------------------ the generated derivation pages

def test_every_gradcheck_case_has_its_page():
    pages = gen.pages()
    assert set(pages) == {name.split("[")[0] for name in CASES}
    covered = [case for page in pages.values() for case in page["cases"]]
    assert sorted(covered) == sorted(CASES)


def _defs(*functions):
    """The definitions under ``@kernels.accelerated``, which the pages render."""
    return [inspect.unwrap(f) for f in functions]


def test_pages_render_the_functions_the_cases_run():
    pages = gen.pages()
    # each with the helpers of its own module it calls, depth first: the products it names
    assert pages["Dense"]["functions"][:6] == [dense.dense_forward, *_defs(dense.x_times_W), dense.dense_backward,
                                               *_defs(dense.pre_activation_and_bias_grad), dense.affine_backward,
                                               *_defs(dense.da_times_W_T)]
    assert pages["Sigmoid"]["functions"] == _defs(activations.sigmoid_forward, activations.sigmoid_backward)
    # with the helpers of their own module they call: the pooling windows, im2col
    assert pages["MaxPool2D"]["functions"] == [pooling.maxpool2d_forward, *_defs(pooling.max_pool_forward),
                                               pooling.maxpool2d_backward, *_defs(pooling.max_pool_backward)]
    assert set(_defs(conv.im2col, conv.col2im)) <= set(pages["Conv2D"]["functions"])
    assert pages["SoftmaxCrossEntropy"]["functions"] == _defs(cross_entropy.softmax_cross_entropy_forward,
                                                              cross_entropy.softmax_cross_entropy_backward)
    assert pages["Dense"]["cls"] is dense.Dense
    # a composed case shows its own code and links to the layers' pages
    stack = pages["ConvPoolDense"]
    assert stack["functions"] == [] and len(stack["composed"]) == 2
    assert _defs(conv.conv2d_forward)[0] in stack["links"] and dense.dense_forward in stack["links"]


def test_each_function_is_rendered_on_exactly_one_page():
    rendered = [gen.qualified(fn) for page in gen.pages().values() for fn in page["functions"]]
    assert len(rendered) == len(set(rendered))
    for page in gen.pages().values():
        for fn in page["links"]:
            assert gen.qualified(fn) in rendered


# ------------------------------------------------------------------------- the built site

@pytest.fixture(scope="module")
def site():
    if not (SITE / "index.html").is_file():
        unavailable(f"no built site at {SITE}: run `mkdocs build --strict` first (pip install '.[docs]')")
    return SITE


def test_a_derivation_page_per_layer_and_loss(site):
    for name, page in gen.pages().items():
        html = (site / "derivations" / f"{page['slug']}.html").read_text(encoding="utf-8")
        for fn in page["functions"]:
            assert f'id="{gen.qualified(fn)}"' in html, f"{name}: {fn.__name__} not on its page"
            assert "arithmatex" in html or not fn.__doc__ or "$" not in fn.__doc__


def test_benchmark_table_is_the_results_file(site):
    """The current table's npdl/PyTorch/JAX medians, recomputed here from the CSV."""
    with open(ROOT / "benchmarks/results/2026-11-26-cpu-fused-dense.csv", newline="") as f:
        records = [r for r in csv.DictReader(f) if r["workload"] == "lenet_b500"]
    html = (site / "benchmarks.html").read_text(encoding="utf-8")
    for impl in ("npdl", "torch", "jax"):
        median = statistics.median(float(r["median_ms"]) for r in records if r["impl"] == impl)
        assert f"<td style=\"text-align: right;\">{median:.1f}</td>" in html or f">{median:.1f}<" in html, impl


def test_reproduction_table_is_the_results_file(site):
    with open(ROOT / "benchmarks/results/reproductions.csv", newline="") as f:
        records = list(csv.DictReader(f))
    text = re.sub(r"<[^>]+>", "", (site / "reproductions.html").read_text(encoding="utf-8"))
    for r in records:
        assert r["command"] in text, r["model"]


# ------------------------------------------------------------------------------ in a browser

@pytest.fixture(scope="module")
def browser(site):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("Selenium is not installed (pip install '.[docs]')")
    binary = next((b for b in CHROMIUM if os.path.exists(b)), None) or shutil.which("chromium")
    if binary is None or not os.path.exists(CHROMEDRIVER):
        unavailable("Chromium or chromedriver is missing (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="npdl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


_PAGE_REPORT = r"""
const article = document.querySelector('article') || document.body;
const copy = article.cloneNode(true);
copy.querySelectorAll('pre, code, .katex, script, style').forEach(e => e.remove());
return {
  math: document.querySelectorAll('.arithmatex').length,
  untypeset: Array.from(document.querySelectorAll('.arithmatex'))
                  .filter(e => !e.querySelector('.katex')).map(e => e.textContent.slice(0, 80)),
  errors: document.querySelectorAll('.katex-error').length,
  rawTex: (copy.textContent.match(/\\(frac|partial|sum|odot|top|sigma|mathbb|text|left|right)\b|\$\$|\$[A-Za-z\\]/g) || []),
  badImages: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  resources: performance.getEntriesByType('resource').map(e => e.name),
};
"""

_ids_cache: dict = {}


def _ids(path: Path) -> set:
    if path not in _ids_cache:
        html = path.read_text(encoding="utf-8", errors="replace")
        _ids_cache[path] = set(re.findall(r'\bid="([^"]+)"', html)) | set(re.findall(r'\bname="([^"]+)"', html))
    return _ids_cache[path]


def _link_problem(url: str):
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "mailto", "javascript", "data"):
        return None
    if parsed.scheme != "file":
        return f"{url}: not a file link"
    target = Path(unquote(parsed.path))
    if not target.is_file():
        return f"{url}: no such file"
    fragment = unquote(parsed.fragment)
    if fragment and target.suffix == ".html" and fragment not in _ids(target):
        return f"{url}: no anchor #{fragment}"
    return None


def _load(driver, page: Path) -> dict:
    driver.get(page.resolve().as_uri())
    deadline = time.time() + 10  # docs/javascripts/katex.js marks the page once it has typeset it
    while driver.execute_script("return document.documentElement.getAttribute('data-math')") != "done" \
            and time.time() < deadline:
        time.sleep(0.05)
    report = driver.execute_script(_PAGE_REPORT)
    report["typeset"] = driver.execute_script("return document.documentElement.getAttribute('data-math')")
    report["console"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return report


def test_every_page_loads_cleanly_from_disk(site, browser):
    # 404.html is a server's error page, with links from the server's root: never opened from disk
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    assert len(pages) >= 40, f"only {len(pages)} pages in {site}"
    problems, math_pages = [], 0
    for page in pages:
        where = page.relative_to(site).as_posix()
        report = _load(browser, page)
        math_pages += report["math"] > 0
        if report["typeset"] != "done":
            problems.append(f"{where}: the math renderer (javascripts/katex.js) never ran")
            break  # every other page would wait for it too
        problems += [f"{where}: console: {m}" for m in report["console"]]
        problems += [f"{where}: formula not typeset: {t!r}" for t in report["untypeset"]]
        problems += [f"{where}: {report['errors']} KaTeX errors"] if report["errors"] else []
        problems += [f"{where}: raw TeX in the text: {t!r}" for t in report["rawTex"]]
        problems += [f"{where}: image not loaded: {src}" for src in report["badImages"]]
        problems += [f"{where}: fetched from elsewhere: {r}" for r in report["resources"]
                     if not r.startswith(("file://", "data:", "blob:"))]
        problems += [f"{where}: link {p}" for p in map(_link_problem, report["links"]) if p]
    assert not problems, "\n".join(problems[:60])
    assert math_pages >= 30, f"only {math_pages} pages hold typeset math"


def test_search_answers_from_disk(site, browser):
    """The offline search from ``file://``: the theme's search worker, started through the vendored
    iframe-worker shim (browsers start no real worker from a file), indexes the site's inlined
    search index and answers a query with a page of the site."""
    browser.get((site / "index.html").resolve().as_uri())
    browser.set_script_timeout(60)
    found = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const config = JSON.parse(document.getElementById('__config').textContent);
        const worker = new Worker(config.search);   // the shim's IFrameWorker on file://
        worker.addEventListener('message', e => {
          if (e.data.type === 1) worker.postMessage({type: 2, data: 'gradcheck'});      // ready: query
          if (e.data.type === 3) done(e.data.data.items.map(item => item[0].location));  // results
        });
        worker.postMessage({type: 0, data: {config: __index.config, docs: __index.docs,
                                            options: {suggest: false}}});            // set up
    """)
    assert "gradcheck.html" in found, found
