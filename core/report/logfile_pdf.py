"""logfile.pdf: a run's figures as one PDF, which RELION's GUI shows for a job.

RELION lists a job's PDF log among its outputs (node type 13 in 3.1,
``LogFile.pdf.relion`` from 4.0) and opens it from the GUI; the PNGs stay
beside it for everything else. Page one is a table (one row per iteration),
the other pages are figures made by gmmrefine.report.plots.
"""

from __future__ import annotations

import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ..io.atomic import atomic_path

# A4 landscape, in inches.
_PAGE = (11.69, 8.27)


def table_figure(title: str, rows: list[dict[str, str]], notes: list[str] = ()) -> Figure:
    """A page holding ``rows`` (column name -> cell text, the first row's keys as the header),
    under ``title`` and above ``notes`` (one line each)."""
    figure = Figure(figsize=_PAGE)
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=14)
    ax = figure.add_axes((0.04, 0.12, 0.92, 0.76))
    ax.axis("off")
    if rows:
        columns = list(rows[0])
        table = ax.table(cellText=[[row.get(c, "") for c in columns] for row in rows],
                         colLabels=columns, loc="upper center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(9 if len(rows) < 25 else 7)
        table.auto_set_column_width(list(range(len(columns))))
        table.scale(1.0, 1.4)
    text = "\n".join(line for note in notes for line in textwrap.wrap(note, 150))
    if text:
        figure.text(0.04, 0.04, text, fontsize=8, va="bottom", family="monospace")
    return figure


def write_logfile_pdf(path: str | os.PathLike, pages: list[Figure]) -> None:
    """Write ``pages`` (matplotlib figures, in order) as one PDF, through a temporary name."""
    with atomic_path(path) as tmp:
        # No creation date: the same run gives the same file.
        with PdfPages(tmp, metadata={"Creator": "gmmrefine", "CreationDate": None}) as pdf:
            for figure in pages:
                pdf.savefig(figure)
