"""Reports: the HTML gallery of captions."""
