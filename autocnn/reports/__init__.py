"""What a finished search tells a reader: its model card and one self-contained HTML report,
both built from what the search logged to MLflow, so a past search's report is rebuilt the same
way (`autocnn report`)."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

from autocnn.reports.card import model_card
from autocnn.tracking import records


@dataclass
class Report:
    record: records.SearchRecord
    card: str  # markdown
    html: str
    figures: dict  # the search's figures drawn for the page: file name -> PNG bytes


def build(tracking_uri: str, reference: str) -> Report:
    """The report of search ``reference`` (a run id, models:/NAME/VERSION or
    models:/NAME@ALIAS) in the store at ``tracking_uri``."""
    from autocnn.reports import page

    record = records.read_search(tracking_uri, reference)
    with tempfile.TemporaryDirectory(prefix="autocnn-report-") as folder:
        records.download(record, Path(folder))
        card = model_card(record)
        html, figures = page.render(record, card)
    record.artifacts = None
    return Report(record, card, html, figures)


__all__ = ["Report", "build", "model_card"]
