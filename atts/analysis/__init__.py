"""Analysis of finished runs: grading, reports, rendering, LLM re-extraction and judging."""
