"""Run results: results.json (schema), junit.xml, report.md, report.html, run comparison."""
