"""The one plain-text table of the console and the text artifacts: columns padded to their
widest cell, two spaces apart, a rule under the header when asked."""


def format_table(header, rows, right=(), rule: bool = False) -> str:
    """``rows`` (sequences of cells, turned into text) under ``header``; the columns whose
    indexes are in ``right`` are right-aligned (numbers), the others left-aligned."""
    cells = [[str(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(row, widths))).rstrip()

    lines = [line(cells[0])] + (["  ".join("-" * w for w in widths)] if rule else [])
    return "\n".join(lines + [line(row) for row in cells[1:]])
