#!/usr/bin/env python3
"""Copies the benchmark tables into README.md.

Between the README's markers <!-- bench:NAME --> and <!-- /bench:NAME --> it puts the load
average line and the markdown tables of tests/bench/results/NAME.md (for watch, only the first:
its file also keeps earlier before/after comparisons). The prose around them, which says what the
figures mean and what bounds them, is written by hand: reread it after a new run.

    tests/bench/readme_tables.py
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tables(name):
    lines = (ROOT / "tests/bench/results" / f"{name}.md").read_text().splitlines()
    load = next((line for line in lines if line.startswith("Load average")), "")
    found, current = [], []
    for line in lines + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append("\n".join(current))
            current = []
    return load, found[:1] if name == "watch" else found


def block(match):
    name = match.group(1)
    load, found = tables(name)
    return f"<!-- bench:{name} -->\n{load}\n\n" + "\n\n".join(found) + f"\n<!-- /bench:{name} -->"


readme = ROOT / "README.md"
text = re.sub(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", block, readme.read_text(), flags=re.S)
readme.write_text(text)
