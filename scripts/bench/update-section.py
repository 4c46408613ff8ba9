#!/usr/bin/env python3
"""Puts one benchmark's figures into BENCHMARKS.md, in the section that
benchmark owns: `## TITLE`, then its description, then the result blocks,
latest first. The description is replaced (the script is the one place it is
written); the new result block goes on top of the ones already there. A
section not there yet is appended at the end of the file.

usage: update-section.py BENCHMARKS.md TITLE DESCRIPTION_FILE RESULT_FILE

Within a section, the line `<!-- results -->` separates the description
from the results; everything up to the next `## ` heading is the section's.
"""
import sys

MARK = "<!-- results -->"


def main():
    path, title, desc_path, result_path = sys.argv[1:5]
    description = open(desc_path).read().strip("\n")
    result = open(result_path).read().strip("\n")
    lines = open(path).read().split("\n")
    heading = f"## {title}"
    try:
        start = lines.index(heading)
    except ValueError:
        start = None
    if start is None:
        text = "\n".join(lines).rstrip("\n")
        text += f"\n\n{heading}\n\n{description}\n\n{MARK}\n\n{result}\n"
        open(path, "w").write(text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = lines[start + 1:end]
    old = "\n".join(body[body.index(MARK) + 1:]).strip("\n") if MARK in body else ""
    section = [heading, "", description, "", MARK, "", result]
    if old:
        section += ["", old]
    section.append("")
    out = lines[:start] + section + lines[end:]
    text = "\n".join(out)
    open(path, "w").write(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
