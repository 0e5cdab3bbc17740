"""Write one derivation page per layer and loss that ``npdl gradcheck`` checks.

Run by the mkdocs-gen-files plugin at every build. The pages come from the gradient-check
cases themselves (``npdl.gradcheck.cases.CASES``): for each case, the npdl functions its
forward and backward call (read from the case's code, never listed by hand), shown with
mkdocstrings -- the docstring (the derivation, in math) above the code that runs. A case
with a bracketed suffix (``Dense[tanh]``) is a configuration of its base name's page. A
function appears in full on the first page that uses it; a later page links to it.

``pages()`` is importable without MkDocs (tests/test_docs_site.py checks the coverage).
"""

from __future__ import annotations

import inspect
import re
import types

import npdl
from npdl.gradcheck.cases import CASES

SOURCES = (npdl.layers, npdl.losses)  # where the checked functions and classes live
FOLDER = "derivations"


def base_name(case_name: str) -> str:
    return case_name.split("[", 1)[0]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _is_npdl_math(obj) -> bool:
    return (inspect.isfunction(obj) and obj.__name__ != "<lambda>"
            and obj.__module__.startswith(("npdl.layers.", "npdl.losses.")))


def _names(code: types.CodeType):
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def called_functions(fn, seen=None) -> list:
    """The npdl layer and loss functions ``fn`` (a case's forward or backward) calls, in order:
    ``fn`` itself when it is one, else those its code names (through ``npdl.layers as L`` and
    ``npdl.losses as F``) or holds in its closure, followed into helper functions of the
    gradient-check modules (a composed stack's forward)."""
    seen = set() if seen is None else seen
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    wrapped = inspect.unwrap(fn)
    if _is_npdl_math(wrapped):
        return [wrapped]
    found = []
    candidates = [getattr(src, name, None) for name in _names(wrapped.__code__) for src in SOURCES]
    candidates += [cell.cell_contents for cell in (wrapped.__closure__ or ()) if _filled(cell)]
    for obj in candidates:
        if not inspect.isfunction(obj):
            continue
        if _is_npdl_math(inspect.unwrap(obj)):
            found.append(inspect.unwrap(obj))
        elif obj.__module__.startswith("npdl.gradcheck"):
            found += called_functions(obj, seen)
    return list(dict.fromkeys(found))


def with_callees(fn, seen=None) -> list:
    """``fn`` followed by the public functions of its own module it calls, depth first: a layer's
    page shows the helpers its forward and backward are written with (``affine_backward``,
    ``im2col``, a recurrent layer's loop and step) beside them."""
    seen = set() if seen is None else seen
    seen.add(fn)
    out = [fn]
    module = inspect.getmodule(fn)
    for name in _names(fn.__code__):
        obj = getattr(module, name, None)
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        obj = inspect.unwrap(obj)
        if obj.__module__ == fn.__module__ and obj not in seen:
            out += with_callees(obj, seen)
    return out


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _composed(case) -> bool:
    """A case whose forward is a helper of the gradient-check modules composing several layers."""
    fn = case.forward
    return fn.__module__.startswith("npdl.gradcheck") and fn.__name__ != "<lambda>"


def qualified(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def pages() -> dict:
    """``{base name: page}``, in the order of the cases; a page is a dict with ``cases`` (the case
    names), ``wrt`` (per case), ``functions`` (rendered here), ``links`` (rendered on an earlier
    page), ``cls`` (the layer or loss class, when one has the base name) and ``composed`` (the
    case's own forward/backward when they compose several layers)."""
    out: dict = {}
    home: dict = {}
    for case in CASES.values():
        name = base_name(case.name)
        page = out.setdefault(name, {"cases": [], "wrt": {}, "functions": [], "links": [], "cls": None,
                                     "composed": [], "slug": slug(name), "group": case.group})
        page["cases"].append(case.name)
        page["wrt"][case.name] = case.wrt
        direct = called_functions(case.forward) + called_functions(case.backward)
        for fn in [f for d in direct for f in with_callees(d)] if not page["composed"] and \
                not _composed(case) else direct:
            where = home.setdefault(qualified(fn), name)
            bucket = page["functions"] if where == name else page["links"]
            if fn not in bucket:
                bucket.append(fn)
        for part in (case.forward, case.backward):
            if part.__module__.startswith("npdl.gradcheck") and part.__name__ != "<lambda>" \
                    and part not in page["composed"]:
                page["composed"].append(part)
        for src in SOURCES:
            cls = getattr(src, name, None)
            if inspect.isclass(cls):
                page["cls"] = cls
    return out


def render(name: str, page: dict, all_pages: dict) -> str:
    lines = [f"# {name}", ""]
    cases = ", ".join(f"`{c}` ({', '.join(page['wrt'][c])})" for c in page["cases"])
    lines += [f"`npdl gradcheck --layer {name}` checks, in float64, against central differences and an "
              f"independent autodiff reference: {cases}.", ""]
    if page["composed"]:
        lines += ["These cases compose several layers, as a network does:", ""]
        for part in page["composed"]:
            lines += ["```python", inspect.getsource(part).rstrip(), "```", ""]
    if page["links"]:
        lines += ["Also runs " + ", ".join(
            f"[`{fn.__name__}`][{qualified(fn)}]" for fn in page["links"]) + " (derived on their own pages).", ""]
    if page["cls"] is not None and not page["functions"]:
        lines += ["The functions this layer runs are derived on their own pages (linked above).", ""]
    for fn in page["functions"]:
        lines += [f"::: {qualified(fn)}", ""]
    if page["cls"] is not None:
        lines += [f"::: {page['cls'].__module__}.{page['cls'].__qualname__}", "    options:",
                  "      members: [forward, backward]", ""]
    return "\n".join(lines)


def index(all_pages: dict) -> str:
    lines = ["# Derivations", "",
             "One page per layer and loss that `npdl gradcheck` proves. Each shows the derivation "
             "(the docstring of the function, with the shapes) above the code that runs: the same "
             "functions the layers call in training and the gradient check calls.", ""]
    for group, title in (("layer", "Layers"), ("loss", "Losses"), ("penalty", "Penalties")):
        names = [n for n, p in all_pages.items() if p["group"] == group]
        if names:
            lines += [f"## {title}", ""]
            lines += [f"* [{n}]({all_pages[n]['slug']}.md): {', '.join(f'`{c}`' for c in all_pages[n]['cases'])}"
                      for n in names]
            lines.append("")
    return "\n".join(lines)


def main():
    import mkdocs_gen_files

    all_pages = pages()
    with mkdocs_gen_files.open(f"{FOLDER}/index.md", "w") as f:
        f.write(index(all_pages))
    for name, page in all_pages.items():
        path = f"{FOLDER}/{page['slug']}.md"
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(render(name, page, all_pages))


if __name__ in ("__main__", "<run_path>") or __name__.startswith("mkdocs_gen_files"):
    main()
