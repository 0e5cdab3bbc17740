"""MkDocs hooks of the npdl site (mkdocs.yml: ``hooks``).

* ``docs/scripts`` goes on ``sys.path``, so the pages' build-time code blocks (markdown-exec)
  can ``import results_tables`` to print tables from ``benchmarks/results/``.
* The slowest pages to build (their code blocks run at build time) are logged at the end,
  so a page that makes the build slow is named.
* The docstrings' reStructuredText roles (``:func:`name```, ``:class:`~npdl.layers.Dense```)
  read as plain code on the site: the role is dropped, and a ``~`` keeps the last name only.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.npdl")
_started: dict = {}
_seconds: dict = {}

SCRIPTS = Path(__file__).resolve().parent / "scripts"
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj|py:\w+):<code>(~?)([^<]*)</code>")


def on_config(config, **kwargs):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return config


def _code(match) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_markdown(markdown, page, **kwargs):
    _started[page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html, page, **kwargs):
    _seconds[page.file.src_uri] = time.perf_counter() - _started.pop(page.file.src_uri, time.perf_counter())
    return _ROLE.sub(_code, html)


def on_post_build(config, **kwargs):
    slowest = sorted(_seconds.items(), key=lambda item: -item[1])[:5]
    log.info("slowest pages: " + ", ".join(f"{uri} {seconds:.1f} s" for uri, seconds in slowest))
