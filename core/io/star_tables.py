"""STAR data blocks as DataFrames: the text is checked here, starfile builds the tables.

The starfile package parses line by line through the standard library's
process-wide ``linecache`` and clears that cache only after a parse that
succeeds (``StarParser.__init__`` ends in ``linecache.clearcache()``). So
once a parse failed, or once anything else in the process cached the file
(a traceback, a debugger), it parses the lines as they were when cached,
not as they are: a notebook or a cryosparc-tools script reading a file again
after the user fixed it got the old error. Each read here drops the file's
cache entry before and after.

starfile also crashes on, or silently mis-reads, what a cut or hand-edited
file holds. The text is checked first, and each problem is named by its line:
bytes that are not UTF-8; NUL bytes; a carriage return inside a line
(linecache splits the line there while starfile counts lines by "\\n", so
the last lines were dropped); a data block with no table (a TypeError inside
starfile, or the next block's table filed under the empty block's name); a
loop_ without labels; a label or block twice; lines starfile would skip
without a word; a row whose values do not match the labels (pandas' "Length
mismatch", or a tokenizer error counted from the loop's first row).
"""

from __future__ import annotations

import codecs
import dataclasses
import linecache
import re
import shlex
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import starfile

from ..errors import InputError, quoted

# A row without quotes, comments, or whitespace other than space and tab
# splits exactly as pandas' whitespace tokenizer splits it. One character
# class (all but tab and printable ASCII other than " # '): fast to search.
_NEEDS_TOKENIZER = re.compile(r"[^\t\x20\x21\x24-\x26\x28-\x7e]")
_BARE_CR = re.compile(r"\r(?!\n)")
# What a value cannot hold and come back the same through starfile's writer
# and reader: control characters and line breaks (the writer fails on a tab
# or splits the row), '#' (a comment on reading), quotes (the reader turns '
# into " and strips a leading one).
_UNWRITABLE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029#'\"]")


@dataclasses.dataclass
class Block:
    """One data block as the text lays it out."""

    name: str
    line: int                 # 1-based line of its data_ line
    labels: list[str]
    rows: int                 # -1 for a key-value block


def read_star_tables(path: Path, as_string: Callable[[str], bool]) -> dict[str, pd.DataFrame]:
    """Every data block of a STAR file as a DataFrame.

    Parameters
    ----------
    path : the STAR file.
    as_string : which labels to keep as text (starfile makes "0001" the number 1).

    Returns
    -------
    Block name -> DataFrame; key-value blocks are one-row DataFrames.

    Raises
    ------
    InputError
        One line naming the file, the line (and row) and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: STAR file not found")
    data = path.read_bytes()
    if not data:
        raise InputError(f"{path}: file is empty; expected a STAR file with a particle table")
    blocks = check_star_text(text_lines(data, path), path)
    if not blocks:
        raise InputError(f"{path}: no data_ block; expected a STAR file (data_NAME, loop_, "
                         "_labels, rows)")
    strings = sorted({label for b in blocks for label in b.labels if as_string(label)})
    parsed = _starfile_read(path, strings)
    tables = {}
    for block in blocks:
        table = parsed.get(block.name)
        if isinstance(table, dict):
            table = pd.DataFrame({k: [v] for k, v in table.items()})
        if table is None or (block.rows >= 0 and len(table) != block.rows):
            # The checks above and starfile disagree about the layout.
            shown = _named("data_" + block.name)
            raise InputError(f"{path}: line {block.line}: {shown} could not be read as "
                             f"{max(block.rows, 0)} rows of {len(block.labels)} values")
        tables[block.name] = table.reset_index(drop=True)
    return tables


def _starfile_read(path: Path, strings: list[str]) -> dict:
    key = str(path)              # starfile's linecache key: str(Path(filename))
    linecache.cache.pop(key, None)
    try:
        with warnings.catch_warnings():
            # Mixed-type columns in files over pandas' chunk size: starfile
            # converts the columns itself afterwards.
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            return starfile.read(path, always_dict=True, parse_as_string=strings)
    except (ValueError, TypeError, IndexError, KeyError) as err:
        # Not expected after the checks; kept to one line if starfile still fails.
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise InputError(f"{path}: not a readable STAR file ({type(err).__name__}: "
                         f"{quoted(reason, 80)})") from None
    finally:
        linecache.cache.pop(key, None)


def check_writable(tables: dict[str, pd.DataFrame], source) -> None:
    """InputError naming the first text value a STAR file cannot carry unchanged.

    Parameters
    ----------
    tables : the blocks about to be written.
    source : the file the values came from, named in the message.
    """
    for table in tables.values():
        for label in table.columns:
            column = table[label]
            if column.dtype.kind not in "OSU" and not pd.api.types.is_string_dtype(column):
                continue
            text = column.astype(object).where(column.notna(), "").astype(str)
            bad = np.flatnonzero(text.str.contains(_UNWRITABLE).to_numpy(bool))
            if bad.size:
                value = text.iloc[bad[0]]
                char = _UNWRITABLE.search(value).group()
                raise InputError(f"{source}: row {bad[0] + 1}: {quoted(value)} (STAR column "
                                 f"{_named('_' + str(label))}) holds {char!r}, which a STAR value "
                                 "cannot carry; expected text without control characters, "
                                 "quotes or '#'")


# --- the text -------------------------------------------------------------------------

def text_lines(data: bytes, path: Path) -> list[str]:
    """The file's lines as starfile will see them, or InputError naming the first bad line."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]      # linecache drops it too
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(f"{path}: line {line}: byte 0x{data[err.start]:02x} is not UTF-8 text; "
                         "expected a text STAR file") from None
    nul = text.find("\0")
    if nul >= 0:
        raise InputError(f"{path}: line {text.count(chr(10), 0, nul) + 1} holds a NUL byte; "
                         "expected a text STAR file, not binary data")
    cr = _BARE_CR.search(text)
    if cr:
        raise InputError(f"{path}: line {text.count(chr(10), 0, cr.start()) + 1} holds a carriage "
                         "return inside the line; expected lines that end in \\n or \\r\\n")
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def check_star_text(lines: list[str], path: Path) -> list[Block]:
    """The data blocks of a STAR text, or InputError at the first line starfile would mis-read.

    Mirrors starfile's reading: a block runs from its ``data_`` line to the
    next; its table is a ``loop_`` (labels, then rows up to the next
    ``data_`` line) or ``_label value`` lines. Inside a block, blank lines
    and ``#`` comments may sit anywhere and anything else is an error;
    before the first block, everything is skipped.
    """
    blocks: list[Block] = []
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("data_"):
            block, i = _block(lines, i, path)
            if block.name in seen:
                raise InputError(f"{path}: line {block.line}: a second "
                                 f"{_named('data_' + block.name)} (the first is at line "
                                 f"{seen[block.name]}); expected each block once")
            seen[block.name] = block.line
            blocks.append(block)
            continue
        # Text before the first data_ line (global_, stray words) is skipped,
        # as starfile and RELION skip it.
        i += 1
    return blocks


def _block(lines: list[str], i: int, path: Path) -> tuple[Block, int]:
    """The block whose data_ line is ``lines[i]``, and the index of the line after it."""
    name, start = lines[i].strip()[5:], i + 1
    block = _named("data_" + name)
    for j in range(i + 1, len(lines)):
        text = lines[j].strip()
        if text.startswith("loop_"):
            return _loop(lines, j, name, start, path)
        if text.startswith("_"):
            return _pairs(lines, j, name, start, path)
        if text.startswith("data_"):
            raise InputError(f"{path}: line {start}: {block} is empty ({_named(text)} follows at "
                             f"line {j + 1}); expected a loop_ table or '_label value' lines "
                             "before the next block")
        if text and not text.startswith("#"):
            raise InputError(f"{path}: line {j + 1}: {quoted(text)} in {block} before its table; "
                             "expected loop_ or '_label value' lines")
    raise InputError(f"{path}: line {start}: {block} is empty (the file ends there); expected a "
                     "loop_ table or '_label value' lines; was the file cut short?")


def _label(text: str, line: int, block: str, labels: list[str], path: Path) -> str:
    """The label a ``_label ...`` line names, unless it is nameless or repeated."""
    label = text.split()[0][1:]
    if not label:
        raise InputError(f"{path}: line {line}: '_' in {block} has no label name; expected "
                         "_rlnSomething")
    if label in labels:
        raise InputError(f"{path}: line {line}: {_named('_' + label)} appears twice in {block}; "
                         "expected each label once")
    return label


def _loop(lines: list[str], i: int, name: str, start: int, path: Path) -> tuple[Block, int]:
    block = _named("data_" + name)
    labels: list[str] = []
    j = i + 1
    while j < len(lines) and lines[j].strip().startswith("_"):
        labels.append(_label(lines[j].strip(), j + 1, block, labels, path))
        j += 1
    if not labels:
        raise InputError(f"{path}: line {i + 1}: loop_ of {block} has no _labels on the lines "
                         "right after it; expected one _label per line")
    rows, comments, end = 0, False, len(lines)
    needs_tokenizer, width = _NEEDS_TOKENIZER.search, len(labels)
    # The common row (plain values, right count) costs a strip, a search and a split.
    for k in range(j, len(lines)):
        text = lines[k].strip()
        if not text:
            continue
        if text.startswith("data_"):
            end = k
            break
        if text[0] == "#":
            comments = True
            continue
        rows += 1
        if needs_tokenizer(text) or len(text.split()) != width:
            _check_row(text, f"{path}: row {rows} of {block} (line {k + 1})", labels)
    if comments and rows == 0:
        # pandas finds no columns in a table of comments only.
        raise InputError(f"{path}: line {start}: the table of {block} holds comments but no "
                         "rows; expected rows of values (or nothing) after the labels")
    return Block(name, start, labels, rows), end


def _check_row(text: str, where: str, labels: list[str]) -> None:
    """InputError (prefixed ``where``) unless the row holds one value per label."""
    values = split_values(text) if _NEEDS_TOKENIZER.search(text) else text.split()
    if values is None:
        raise InputError(f"{where}: a quote opens and never closes; expected quoted values "
                         "to close on their own line")
    if len(values) == len(labels):
        return
    if text.startswith(("loop_", "_")):
        raise InputError(f"{where}: {quoted(text)} after the rows; expected one table per "
                         "data_ block")
    counts = f"{len(values)} value{'s' * (len(values) != 1)} for {len(labels)} " \
        f"label{'s' * (len(labels) != 1)}"
    if len(values) > len(labels):
        raise InputError(f"{where}: {counts}; expected one value per label (quote a name that "
                         "holds a space)")
    comment = " ('#' starts a comment)" if "#" in text else ""
    raise InputError(f"{where}: {counts}{comment}, none for {_named('_' + labels[len(values)])}; "
                     "expected one value per label")


def split_values(text: str) -> list[str] | None:
    """A row's values as starfile's pandas call splits them; None for an unclosed quote.

    starfile turns ' into " first; pandas then splits at spaces and tabs, a
    value opening with " runs to the closing one ("" is a literal quote, text
    straight after the closing quote joins the value, its first character
    even if it is #), and # elsewhere outside quotes ends the row.
    """
    text = text.replace("'", '"')
    values: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] == "#":
            return values
        parts = []
        if text[i] == '"':
            i += 1
            while True:
                close = text.find('"', i)
                if close < 0:
                    return None
                parts.append(text[i:close])
                i = close + 1
                if i < n and text[i] == '"':
                    parts.append('"')
                    i += 1
                    continue
                break
            if i < n and text[i] not in " \t":
                parts.append(text[i])       # even a '#' right after the closing quote
                i += 1
        while i < n and text[i] not in " \t#":
            parts.append(text[i])
            i += 1
        values.append("".join(parts))


def _pairs(lines: list[str], i: int, name: str, start: int, path: Path) -> tuple[Block, int]:
    block = _named("data_" + name)
    keys: list[str] = []
    j = i
    # starfile ends a key-value block at any line starting "data", not only "data_".
    while j < len(lines) and not lines[j].strip().startswith("data"):
        text = lines[j].strip()
        if text.startswith("_"):
            label = _label(text, j + 1, block, keys, path)
            where = f"{path}: line {j + 1}: {_named('_' + label)} in {block}"
            try:
                parts = shlex.split(text)
            except ValueError as err:
                raise InputError(f"{where}: {err}; expected '_label value'") from None
            if len(parts) != 2:
                raise InputError(f"{where} has {len(parts) - 1} values; expected '_label value'")
            keys.append(label)
        elif text and not text.startswith("#"):
            raise InputError(f"{path}: line {j + 1}: {quoted(text)} in {block}; expected "
                             "'_label value' lines (a table starts with loop_)")
        j += 1
    if j < len(lines) and not lines[j].strip().startswith("data_"):
        raise InputError(f"{path}: line {j + 1}: {quoted(lines[j].strip())} in {block}; "
                         "expected '_label value' lines or the next data_ block")
    return Block(name, start, keys, -1), j


def _named(text: str) -> str:
    """A block or label name as the file spells it, quoted where it would not print as itself."""
    return text if text.isprintable() and len(text) <= 60 else quoted(text, 60)
