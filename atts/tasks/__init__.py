"""Tasks: datasets, the synthetic arithmetic task, prompts and answer grading."""
