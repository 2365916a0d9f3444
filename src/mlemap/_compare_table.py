"""The table ``compare`` returns: every column a pandas DataFrame has, printed short.

``compare`` gives twenty-odd columns (posterior summaries, each estimate's value, its
posterior quantile and z-score, the Laplace sd ratio and Wasserstein distance, the prior's
pull, ArviZ's psense). pandas prints such a frame as ``[6 rows x 21 columns]`` with the middle
hidden, the estimates among it. This subclass changes only what ``print`` and a notebook
show: the posterior's mean, sd and interval and each estimate's value, fitted to the
terminal's width (pandas' own wrapping, nothing hidden), then a line with what ArviZ's
psense flags and how to see the rest. Indexing, ``.loc``, ``to_csv`` and every other
operation are pandas' own, on all the columns; a table derived from it is a plain DataFrame.
"""

from __future__ import annotations

import html
import shutil
import textwrap

import pandas as pd

__all__ = ["CompareTable"]

#: Significant digits of the printed numbers (the table itself keeps full precision).
DIGITS = 4


class CompareTable(pd.DataFrame):
    """``mm.compare``'s result: a :class:`pandas.DataFrame` with every column, printed short.

    ``print(table)`` shows the posterior's ``mean``, ``sd`` and interval and each estimate's
    value; :meth:`estimates` returns those columns, :meth:`diagnostics` the others
    (``median``, ``K_quantile``, ``K_z``, ``K_sd``, ``K_sd_ratio``, ``K_wasserstein``,
    ``K_pull_sd``, ``K_pull_se``, ``psense_*``), and ``pd.DataFrame(table)`` all of them.
    ``attrs["estimates"]`` lists the estimates' labels.
    """

    @property
    def _constructor(self):
        return pd.DataFrame  # a selection or a computation is a plain DataFrame

    # -- the two views -------------------------------------------------------------------

    def _short_columns(self) -> list[str]:
        labels = [k for k in self.attrs.get("estimates", ()) if k in self.columns]
        lb = [c for c in self.columns if str(c).endswith("_lb")][:1]
        ub = [c for c in self.columns if str(c).endswith("_ub")][:1]
        return [c for c in ("mean", "sd") if c in self.columns] + lb + ub + labels

    def estimates(self) -> pd.DataFrame:
        """The posterior's mean, sd and interval, and each estimate's value."""
        return pd.DataFrame(self)[self._short_columns()]

    def diagnostics(self) -> pd.DataFrame:
        """Every other column: median, quantiles, z-scores, Laplace fit, prior pull, psense."""
        short = set(self._short_columns())
        return pd.DataFrame(self)[[c for c in self.columns if c not in short]]

    # -- printing ------------------------------------------------------------------------

    def _footer(self) -> list[str]:
        lines = []
        if "psense_diagnosis" in self.columns:
            flagged: dict[str, list[str]] = {}
            for name, diagnosis in self["psense_diagnosis"].items():
                if isinstance(diagnosis, str) and diagnosis.startswith("potential"):
                    flagged.setdefault(diagnosis, []).append(str(name))
            lines += [f"psense: {d} for {', '.join(names)}." for d, names in flagged.items()]
        rest = [c for c in self.columns if c not in set(self._short_columns())]
        ci = self.attrs.get("ci", "")
        lines.append((f"Interval: {ci}. " if ci else "")
                     + f"{len(rest)} more columns ({', '.join(map(str, rest[:4]))}"
                     + (", ..." if len(rest) > 4 else "")
                     + "): table.diagnostics(); every column: pd.DataFrame(table).")
        return lines

    def to_text(self, width: int | None = None) -> str:
        """What ``print`` shows, at most ``width`` characters wide (default: the terminal's,
        80 when there is none)."""
        width = width or shutil.get_terminal_size((80, 24)).columns
        body = self.estimates().to_string(float_format=lambda v: f"{v:.{DIGITS}g}",
                                          line_width=width)
        footer = [textwrap.fill(line, width, subsequent_indent="  ")
                  for line in self._footer()]
        return "\n".join([body, "", *footer])

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        table = self.estimates().to_html(float_format=lambda v: f"{v:.{DIGITS}g}")
        notes = "".join(f"<p>{html.escape(line)}</p>" for line in self._footer())
        return f"<div>{table}{notes}</div>"
