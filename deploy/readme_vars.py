"""The configuration variables the README documents, for the deploy checks.

A variable is documented when it appears in the first cell of a row of one of
the README's tables: `BFF_X_Y`, with shorthand continuations in the same cell
(`BFF_UPSTREAM_USER`, `_ORDER`) expanded.
"""
import re


def documented(readme_path):
    names = set()
    with open(readme_path) as readme:
        for line in readme:
            if not line.startswith("| `"):
                continue
            cell = line.split("|")[1]
            prefix = None
            for var in re.findall(r"`([A-Z_]+)`", cell):
                if var.startswith("_") and prefix:
                    names.add(prefix + var)
                elif not var.startswith("_"):
                    names.add(var)
                    prefix = var.rsplit("_", 1)[0]
    return names


def crate_version(manifest_path):
    """The `version = "…"` of a crate's own manifest (None if inherited)."""
    with open(manifest_path) as manifest:
        found = re.search(r'^version = "([^"]+)"', manifest.read(), re.M)
    return found.group(1) if found else None
