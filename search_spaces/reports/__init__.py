"""The best-config report of a sweep and its figures: :mod:`.report` builds the document from a sweep
directory, :mod:`.render` writes it as JSON, Markdown (:mod:`.report_markdown`) or HTML
(:mod:`.report_html`); :mod:`.plots` and :mod:`.insights_report` draw the figures."""
